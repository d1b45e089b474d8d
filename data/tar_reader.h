// WebDataset tar shards: the regular files of a tar (read with libarchive),
// with names checked before anything is used. Torch- and protobuf-free.
#pragma once

#include <functional>
#include <string>

namespace moxie {

// Calls visit(name, bytes) for each regular file in archive order. Throws
// DatasetError naming the tar and the entry for a name that is absolute,
// climbs out with "..", or holds a NUL or backslash (path traversal), for
// links and devices, and for a damaged or truncated archive.
void for_each_tar_file(
    const std::string& tar_path,
    const std::function<void(const std::string& name, std::string bytes)>& visit);

// A WebDataset key and extension: "dir/0001.seg.png" -> ("dir/0001", "seg.png"),
// split at the first dot of the last path component.
std::pair<std::string, std::string> split_key(const std::string& name);

}  // namespace moxie
