// Tar reading through libarchive.
#include "data/tar_reader.h"

#include <archive.h>
#include <archive_entry.h>

#include <memory>

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

}  // namespace

std::pair<std::string, std::string> split_key(const std::string& name) {
  const size_t slash = name.rfind('/');
  const size_t base = slash == std::string::npos ? 0 : slash + 1;
  const size_t dot = name.find('.', base);
  if (dot == std::string::npos) return {name, ""};
  return {name.substr(0, dot), name.substr(dot + 1)};
}

void for_each_tar_file(const std::string& tar_path,
                       const std::function<void(const std::string&, std::string)>& visit) {
  std::unique_ptr<archive, decltype(&archive_read_free)> a(archive_read_new(), archive_read_free);
  archive_read_support_format_tar(a.get());
  archive_read_support_format_gnutar(a.get());
  archive_read_support_filter_all(a.get());
  if (archive_read_open_filename(a.get(), tar_path.c_str(), 1 << 16) != ARCHIVE_OK) {
    throw DatasetError("tar " + tar_path + ": " + archive_error_string(a.get()));
  }
  archive_entry* entry = nullptr;
  while (true) {
    const int r = archive_read_next_header(a.get(), &entry);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
      throw DatasetError("tar " + tar_path + " is damaged or truncated (" +
                         archive_error_string(a.get()) + "); re-create it");
    }
    const char* raw = archive_entry_pathname(entry);
    const std::string name = raw ? raw : "";
    const std::string why = unsafe_name(name);
    if (!why.empty()) {
      throw DatasetError("tar " + tar_path + ": entry '" + name + "' has " + why +
                         "; refusing the archive (re-create it with relative names)");
    }
    const auto type = archive_entry_filetype(entry);
    if (type == AE_IFDIR) continue;
    if (type != AE_IFREG) {
      throw DatasetError("tar " + tar_path + ": entry '" + name +
                         "' is a link or special file; a WebDataset tar holds regular files only");
    }
    const la_int64_t size = archive_entry_size(entry);
    if (size < 0 || size > (la_int64_t{1} << 32)) {
      throw DatasetError("tar " + tar_path + ": entry '" + name + "' has an impossible size");
    }
    std::string bytes(static_cast<size_t>(size), '\0');
    size_t done = 0;
    while (done < bytes.size()) {
      const la_ssize_t n = archive_read_data(a.get(), bytes.data() + done, bytes.size() - done);
      if (n <= 0) {
        throw DatasetError("tar " + tar_path + ": entry '" + name + "' is truncated (" +
                           (n < 0 ? archive_error_string(a.get()) : "end of data") + ")");
      }
      done += static_cast<size_t>(n);
    }
    visit(name, std::move(bytes));
  }
}

}  // namespace moxie
