// A dataset's manifest.pb: "MOXMANIF" | u32 format version | u64 payload
// bytes | u32 crc32c(payload) | payload (a serialized data::Manifest), written
// atomically (temporary file, fsync, rename). Include only from torch-free
// translation units (see data/CMakeLists.txt).
#pragma once

#include <cstdint>
#include <string>

#include "data/dataset.h"
#include "data/shard.pb.h"

namespace moxie {

constexpr uint32_t kManifestFormatVersion = 1;

void write_manifest(const std::string& path, const data::Manifest& manifest);
// DatasetError naming the file if it is not an intact manifest.
data::Manifest read_manifest(const std::string& path);

}  // namespace moxie
