// libFuzzer target: arbitrary bytes as a WebDataset tar (plain or compressed).
// Reading it must end in a DatasetError naming the tar, or regular members of
// safe names whose bytes are what their headers say: never a crash, a hang or
// an allocation sized by a header's claim (AddressSanitizer and UBSan).
// Started on an empty corpus folder, it first writes valid tars there (ustar,
// GNU tar, gzip-compressed) with libarchive, as the seeds.
#include <archive.h>
#include <archive_entry.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "core/common/file_io.h"
#include "data/dataset.h"
#include "data/tar_reader.h"

namespace fs = std::filesystem;

namespace {

std::string tar_of(int format, bool gzip,
                   const std::vector<std::pair<std::string, std::string>>& members) {
  std::vector<char> buf(1 << 20);
  size_t used = 0;
  archive* a = archive_write_new();
  archive_write_set_format(a, format);
  if (gzip) archive_write_add_filter_gzip(a);
  archive_write_set_bytes_in_last_block(a, 1);
  if (archive_write_open_memory(a, buf.data(), buf.size(), &used) != ARCHIVE_OK) std::abort();
  for (const auto& [name, bytes] : members) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, static_cast<la_int64_t>(bytes.size()));
    archive_write_header(a, e);
    archive_write_data(a, bytes.data(), bytes.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
  return std::string(buf.data(), used);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  const std::vector<std::pair<std::string, std::string>> members = {
      {"0001.txt", "the first sample"},
      {"0001.json", R"({"license": "CC0-1.0"})"},
      {"dir/0002.seg.txt", std::string(700, 'x')}};
  for (int i = 1; i < *argc; ++i) {
    const std::string arg = (*argv)[i];
    if (arg.empty() || arg[0] == '-' || !fs::is_directory(arg) || !fs::is_empty(arg)) continue;
    moxie::write_file_atomically(arg + "/seed-ustar",
                                 tar_of(ARCHIVE_FORMAT_TAR_USTAR, false, members), "seed");
    moxie::write_file_atomically(arg + "/seed-gnutar",
                                 tar_of(ARCHIVE_FORMAT_TAR_GNUTAR, false, members), "seed");
    moxie::write_file_atomically(arg + "/seed-gzip",
                                 tar_of(ARCHIVE_FORMAT_TAR_USTAR, true, members), "seed");
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    moxie::for_each_tar_file_in(bytes, "fuzz.tar", [](const std::string& name, std::string member) {
      if (name.empty() || name[0] == '/' || member.size() > moxie::kMaxTarEntryBytes) std::abort();
    });
  } catch (const moxie::DatasetError&) {
  }
  return 0;
}
