// Tar reading through libarchive.
#include "data/tar_reader.h"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <memory>

#include "core/common/file_io.h"
#include "data/dataset.h"

namespace moxie {
namespace {

// Why `name` may not be used as a path inside the dataset, or "" if it may.
std::string unsafe_name(const std::string& name) {
  if (name.empty()) return "an empty name";
  if (name.find('\0') != std::string::npos || name.find('\\') != std::string::npos) {
    return "a NUL or backslash in the name";
  }
  if (name.front() == '/') return "an absolute path";
  size_t start = 0;
  while (start <= name.size()) {
    const size_t end = std::min(name.find('/', start), name.size());
    if (name.compare(start, end - start, "..") == 0 && end - start == 2) {
      return "a '..' component (path traversal)";
    }
    start = end + 1;
  }
  return "";
}

// A name as the archive gives it, cut short for a message.
std::string cut(const std::string& name) {
  return name.size() > 200 ? name.substr(0, 200) + "..." : name;
}

}  // namespace

std::pair<std::string, std::string> split_key(const std::string& name) {
  const size_t slash = name.rfind('/');
  const size_t base = slash == std::string::npos ? 0 : slash + 1;
  const size_t dot = name.find('.', base);
  if (dot == std::string::npos) return {name, ""};
  return {name.substr(0, dot), name.substr(dot + 1)};
}

namespace {

using Archive = std::unique_ptr<archive, decltype(&archive_read_free)>;

Archive new_reader() {
  Archive a(archive_read_new(), archive_read_free);
  archive_read_support_format_tar(a.get());
  archive_read_support_format_gnutar(a.get());
  archive_read_support_filter_all(a.get());
  return a;
}

// libarchive's message, which may be absent (a NULL string).
std::string error_text(archive* a) {
  const char* text = archive_error_string(a);
  return text ? text : "no further detail from libarchive";
}

// `bytes_in`: the archive's size as stored; an uncompressed member cannot be
// larger, a compressed one is held to kMaxTarEntryBytes only.
void visit_entries(archive* a, const std::string& tar_path, uint64_t bytes_in,
                   const TarVisit& visit) {
  archive_entry* entry = nullptr;
  while (true) {
    const int r = archive_read_next_header(a, &entry);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
      throw DatasetError("tar " + tar_path + " is damaged or truncated (" + error_text(a) +
                         "); re-create it");
    }
    const char* raw = archive_entry_pathname(entry);
    const std::string name = raw ? raw : "";
    const std::string why = unsafe_name(name);
    if (!why.empty()) {
      throw DatasetError("tar " + tar_path + ": entry '" + cut(name) + "' has " + why +
                         "; refusing the archive (re-create it with relative names)");
    }
    const auto type = archive_entry_filetype(entry);
    if (type == AE_IFDIR) continue;
    if (type != AE_IFREG) {
      throw DatasetError("tar " + tar_path + ": entry '" + cut(name) +
                         "' is a link or special file; a WebDataset tar holds regular files only");
    }
    const la_int64_t size = archive_entry_size(entry);
    const bool compressed = archive_filter_code(a, 0) != ARCHIVE_FILTER_NONE;
    const uint64_t limit = compressed ? kMaxTarEntryBytes : std::min(kMaxTarEntryBytes, bytes_in);
    if (size < 0 || static_cast<uint64_t>(size) > limit) {
      throw DatasetError("tar " + tar_path + ": entry '" + cut(name) + "' claims " +
                         std::to_string(size) + " bytes, more than " +
                         (limit == kMaxTarEntryBytes ? "the limit of " + std::to_string(limit)
                                                     : "the tar's " + std::to_string(limit)) +
                         " bytes; re-create the archive");
    }
    // Read in blocks: what is held follows what the archive really yields.
    std::string bytes;
    char block[1 << 16];
    while (bytes.size() < static_cast<uint64_t>(size)) {
      const size_t want =
          std::min<uint64_t>(sizeof(block), static_cast<uint64_t>(size) - bytes.size());
      const la_ssize_t n = archive_read_data(a, block, want);
      if (n <= 0) {
        throw DatasetError("tar " + tar_path + ": entry '" + cut(name) + "' is truncated (" +
                           (n < 0 ? error_text(a) : "end of data") + ")");
      }
      bytes.append(block, static_cast<size_t>(n));
    }
    visit(name, std::move(bytes));
  }
}

InputFile open_tar(const std::string& tar_path) {
  try {
    return InputFile(tar_path, "tar");
  } catch (const FileError& e) {
    throw DatasetError(e.what());
  }
}

}  // namespace

void for_each_tar_file(const std::string& tar_path, const TarVisit& visit) {
  // Opened here first, so that a FIFO or device is refused before libarchive
  // could block on it; libarchive then reads the same open file.
  const InputFile file = open_tar(tar_path);
  Archive a = new_reader();
  if (archive_read_open_fd(a.get(), file.fd(), 1 << 16) != ARCHIVE_OK) {
    throw DatasetError("tar " + tar_path + ": " + error_text(a.get()));
  }
  visit_entries(a.get(), tar_path, file.size(), visit);
}

void for_each_tar_file_in(const std::string& tar_bytes, const std::string& name,
                          const TarVisit& visit) {
  Archive a = new_reader();
  if (archive_read_open_memory(a.get(), tar_bytes.data(), tar_bytes.size()) != ARCHIVE_OK) {
    throw DatasetError("tar " + name + ": " + error_text(a.get()));
  }
  visit_entries(a.get(), name, tar_bytes.size(), visit);
}

}  // namespace moxie
