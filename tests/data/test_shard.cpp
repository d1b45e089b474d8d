// Shard records: round trips of text, image and audio samples, random access,
// and one clear ShardError (file and byte offset) for every kind of damage.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "core/common/crc32c.h"
#include "data/manifest.h"
#include "data/shard_io.h"
#include "tests/testing.h"

using namespace moxie;
namespace fs = std::filesystem;

namespace {

fs::path scratch(const std::string& name) {
  auto dir = fs::temp_directory_path() / "moxie_shard_test";
  fs::create_directories(dir);
  return dir / name;
}

data::Sample make_sample(uint64_t id, std::mt19937& rng) {
  data::Sample s;
  s.set_id(id);
  s.add_sources(static_cast<uint32_t>(id % 3));
  auto* text = s.add_segments()->mutable_text();
  std::vector<int32_t> tokens;
  for (uint64_t k = 0; k < 5 + id % 17; ++k) tokens.push_back(static_cast<int32_t>(rng() % 70000));
  set_text_tokens(text, tokens);
  if (id % 2 == 0) {
    auto* image = s.add_segments()->mutable_image();
    image->set_height(4);
    image->set_width(3);
    image->set_channels(3);
    std::string pixels(36, '\0');
    for (auto& c : pixels) c = static_cast<char>(rng());
    image->set_pixels(pixels);
  }
  if (id % 3 == 0) {
    auto* audio = s.add_segments()->mutable_audio();
    audio->set_sample_rate(16000);
    audio->set_channels(1);
    audio->set_pcm_s16le(std::string(2 * (100 + id), static_cast<char>(id)));
  }
  return s;
}

std::vector<data::Sample> write_shard(const fs::path& path, int n) {
  std::mt19937 rng(7);
  std::vector<data::Sample> samples;
  ShardWriter w(path.string());
  for (int i = 0; i < n; ++i) {
    samples.push_back(make_sample(static_cast<uint64_t>(i), rng));
    w.append(samples.back());
  }
  w.close();
  return samples;
}

using testing::flip_byte;

}  // namespace

TEST_CASE("crc32c matches the published check values") {
  CHECK(crc32c("123456789", 9) == 0xE3069283u);  // the CRC catalogue's check value
  const std::string zeros(32, '\0'), ones(32, '\xff');
  CHECK(crc32c(zeros.data(), 32) == 0x8A9136AAu);  // RFC 3720, B.4
  CHECK(crc32c(ones.data(), 32) == 0x62A8AB43u);
  // Continuing a checksum equals checksumming the concatenation.
  CHECK(crc32c("56789", 5, crc32c("1234", 4)) == 0xE3069283u);
  CHECK(crc32c_portable("123456789", 9) == 0xE3069283u);
  CHECK(crc32c_portable(zeros.data(), 32) == 0x8A9136AAu);
}

TEST_CASE("crc32c's hardware form equals the table form at every length and alignment") {
  if (!crc32c_hardware()) WARN("no SSE4.2 here: crc32c() is the table form itself");
  std::mt19937 rng(7);
  std::vector<uint8_t> buf(3 * 3 * 8192 + 3 * 256 + 64);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  // Around the three-lane rounds' sizes (3 x 256 and 3 x 8192 bytes) and past them.
  std::vector<size_t> lengths;
  for (size_t n = 0; n < 80; ++n) lengths.push_back(n);
  for (size_t edge : {3 * 256, 6 * 256, 3 * 8192, 6 * 8192, 6 * 8192 + 3 * 256}) {
    for (size_t d = 0; d < 20; ++d) lengths.push_back(edge - 10 + d);
  }
  for (int k = 0; k < 50; ++k) lengths.push_back(rng() % (buf.size() - 8));
  for (size_t n : lengths) {
    for (size_t offset : {0, 1, 5, 7}) {
      const uint32_t seed = static_cast<uint32_t>(rng());
      INFO("length " << n << ", offset " << offset);
      REQUIRE(crc32c(buf.data() + offset, n) == crc32c_portable(buf.data() + offset, n));
      REQUIRE(crc32c(buf.data() + offset, n, seed) ==
              crc32c_portable(buf.data() + offset, n, seed));
    }
  }
}

TEST_CASE("a shard round-trips text, image and audio samples, in order and by index") {
  const auto path = scratch("roundtrip.shard");
  const auto samples = write_shard(path, 60);
  CHECK_FALSE(fs::exists(path.string() + ".tmp"));
  ShardReader r(path.string());
  REQUIRE(r.size() == 60);
  for (size_t i : {59, 0, 31, 2, 58}) {
    CHECK(r.read(i).SerializeAsString() == samples[i].SerializeAsString());
  }
  for (size_t i = 0; i < r.size(); ++i) CHECK(r.read(i).id() == i);
  CHECK_THROWS_AS(r.read(60), std::out_of_range);
}

TEST_CASE("an empty shard is valid, and an unclosed writer leaves nothing behind") {
  const auto path = scratch("empty.shard");
  {
    ShardWriter w(path.string());
    w.close();
  }
  CHECK(ShardReader(path.string()).size() == 0);
  const auto never = scratch("never.shard");
  fs::remove(never);
  {
    ShardWriter w(never.string());
    std::mt19937 rng(1);
    w.append(make_sample(0, rng));
  }  // no close(): an interrupted build
  CHECK_FALSE(fs::exists(never));
  CHECK_FALSE(fs::exists(never.string() + ".tmp"));
}

TEST_CASE("damaged shards give one error naming the file and the byte offset") {
  const auto path = scratch("damaged.shard");
  write_shard(path, 10);
  uint64_t record3 = 0;
  {
    ShardReader r(path.string());
    record3 = r.offset(3);
  }
  SECTION("a flipped byte in a record's payload fails that record only") {
    flip_byte(path, record3 + 16 + 2);
    ShardReader r(path.string());
    CHECK_THROWS_WITH(r.read(3), Catch::Contains(path.string()) &&
                                     Catch::Contains("at byte " + std::to_string(record3)) &&
                                     Catch::Contains("checksum mismatch"));
    CHECK(r.read(4).id() == 4);
  }
  SECTION("a flipped byte in a record's length is caught before any allocation") {
    flip_byte(path, record3 + 7);
    CHECK_THROWS_WITH(ShardReader(path.string()).read(3),
                      Catch::Contains("record header checksum mismatch"));
  }
  SECTION("a truncated shard is refused when opened") {
    fs::resize_file(path, fs::file_size(path) - 25);
    CHECK_THROWS_WITH(ShardReader(path.string()), Catch::Contains("truncated"));
    fs::resize_file(path, 10);
    CHECK_THROWS_WITH(ShardReader(path.string()), Catch::Contains("truncated"));
  }
  SECTION("a damaged index or trailer is refused when opened") {
    flip_byte(path, fs::file_size(path) - 20 - 3);  // inside the index record's payload
    CHECK_THROWS_AS(ShardReader(path.string()), ShardError);
  }
  SECTION("not a shard at all") {
    std::ofstream(path, std::ios::binary) << std::string(100, 'x');
    CHECK_THROWS_WITH(ShardReader(path.string()), Catch::Contains("bad magic"));
  }
  SECTION("a missing file") {
    CHECK_THROWS_WITH(ShardReader((path.string() + ".nope")), Catch::Contains("cannot open shard"));
  }
}
