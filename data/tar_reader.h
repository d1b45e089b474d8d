// WebDataset tar shards: the regular files of a tar (read with libarchive),
// with names checked before anything is used. Torch- and protobuf-free.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace moxie {

// Calls visit(name, bytes) for each regular file in archive order. Throws
// DatasetError naming the tar and the entry for a name that is absolute,
// climbs out with "..", or holds a NUL or backslash (path traversal), for
// links and devices, for a damaged or truncated archive, and for an entry
// whose size exceeds kMaxTarEntryBytes or (uncompressed) the tar itself. A
// directory, FIFO or device at `tar_path` is refused by what it is.
using TarVisit = std::function<void(const std::string& name, std::string bytes)>;
void for_each_tar_file(const std::string& tar_path, const TarVisit& visit);
// The same over a tar held in memory; `name` stands for it in errors.
void for_each_tar_file_in(const std::string& tar_bytes, const std::string& name,
                          const TarVisit& visit);

constexpr uint64_t kMaxTarEntryBytes = uint64_t{1} << 30;  // 1 GiB, one member

// A WebDataset key and extension: "dir/0001.seg.png" -> ("dir/0001", "seg.png"),
// split at the first dot of the last path component.
std::pair<std::string, std::string> split_key(const std::string& name);

}  // namespace moxie
