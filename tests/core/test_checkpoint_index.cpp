// The checkpoint index (core/checkpoint/checkpoint_index.h): every field survives a
// commit and a read, each tensor's shape and pieces are found under its name,
// a missing, uncommitted, truncated or damaged index is one CheckpointError
// naming the file, and the folder bookkeeping (commit, list, prune) keeps what
// it promises.
#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <map>

#include "core/checkpoint/checkpoint_index.h"
#include "core/checkpoint/safetensors.h"
#include "core/common/framed_file.h"
#include "tests/testing.h"

using namespace moxie;
using Catch::Contains;
namespace fs = std::filesystem;

namespace {

CheckpointPiece piece(int rank, std::vector<int64_t> start, std::vector<int64_t> shape,
                      uint32_t crc) {
  CheckpointPiece p;
  p.rank = rank;
  p.file = "rank-0000" + std::to_string(rank) + ".safetensors";
  p.name = "stored/" + std::to_string(rank);
  p.start = std::move(start);
  p.shape = std::move(shape);
  p.crc32c = crc;
  return p;
}

// Three tensors as a two-rank run saves them: a matrix split by rows over the
// ranks, a vector only rank 0 stores, and a scalar (no dimensions).
CheckpointIndex two_rank_index() {
  CheckpointIndex index;
  index.step = 120;
  index.layout = "dp2 x ep2";
  index.world = 2;
  index.rank_files = {"rank-00000.safetensors", "rank-00001.safetensors"};
  // As commit_from_ranks records the files: sizes and header checksums.
  index.files = {{index.rank_files[0], 4096, 512, 0x12345678u},
                 {index.rank_files[1], 2048, 256, 0xCAFEF00Du}};
  CheckpointTensor w{"model/layers.0.experts.w13", "BF16", {4, 6}, {}};
  w.pieces = {piece(0, {0, 0}, {2, 6}, 0xDEADBEEFu), piece(1, {2, 0}, {2, 6}, 7)};
  CheckpointTensor norm{"model/norm.weight", "F32", {6}, {piece(0, {0}, {6}, 0xFFFFFFFFu)}};
  CheckpointTensor count{"optim/step", "I64", {}, {piece(1, {}, {}, 0)}};
  index.tensors = {w, norm, count};
  return index;
}

std::string describe(const CheckpointPiece& p) {
  std::string s = std::to_string(p.rank) + " " + p.file + " " + p.name + " start";
  for (auto d : p.start) s += " " + std::to_string(d);
  s += " shape";
  for (auto d : p.shape) s += " " + std::to_string(d);
  return s + " crc " + std::to_string(p.crc32c);
}

// A committed checkpoint folder under run, with the two-rank index.
std::string committed(const fs::path& run, int64_t step) {
  const auto dir = checkpoint_dir(run.string(), step);
  fs::create_directories(dir);
  auto index = two_rank_index();
  index.step = step;
  commit_checkpoint(dir, index);
  return dir;
}

// A committed checkpoint whose rank file exists (one rank, one F32 tensor
// of 3 values), recorded as commit_from_ranks records it.
std::string loadable(const fs::path& run, int64_t step) {
  const auto dir = checkpoint_dir(run.string(), step);
  fs::create_directories(dir);
  const float values[3] = {1.f, 2.f, static_cast<float>(step)};
  const std::string file = "rank-00000.safetensors";
  safetensors::write((fs::path(dir) / file).string(),
                     {{"w", safetensors::DType::F32, {3}, values, sizeof(values)}},
                     {{"moxie.state", "{\"step\":\"" + std::to_string(step) + "\"}"}});
  CheckpointIndex index;
  index.step = step;
  index.world = 1;
  index.rank_files = {file};
  index.files = {describe_rank_file(dir, file)};
  CheckpointPiece p;
  p.file = file;
  p.name = "w";
  p.start = {0};
  p.shape = {3};
  p.crc32c = checksum(values, sizeof(values));
  index.tensors = {{"w", "F32", {3}, {p}}};
  commit_checkpoint(dir, index);
  return dir;
}

// The index of `dir` changed by `edit` and committed again.
template <class Edit>
void recommit(const std::string& dir, Edit edit) {
  auto index = read_checkpoint_index(dir);
  edit(index);
  commit_checkpoint(dir, index);
}

}  // namespace

TEST_CASE("checkpoint index: every field survives commit and read") {
  testing::TempDir tmp;
  const auto dir = tmp.file("step");
  fs::create_directories(dir);
  const auto written = two_rank_index();
  commit_checkpoint(dir, written);
  CHECK(fs::exists(fs::path(dir) / kIndexName));
  CHECK(is_committed(dir));

  const auto read = read_checkpoint_index(dir);
  CHECK(read.step == 120);
  CHECK(read.layout == "dp2 x ep2");
  CHECK(read.world == 2);
  CHECK(read.rank_files == written.rank_files);
  REQUIRE(read.tensors.size() == written.tensors.size());
  for (size_t i = 0; i < written.tensors.size(); ++i) {
    const auto &a = written.tensors[i], &b = read.tensors[i];
    INFO(a.name);
    CHECK(b.name == a.name);  // in the order they were written
    CHECK(b.dtype == a.dtype);
    CHECK(b.shape == a.shape);
    REQUIRE(b.pieces.size() == a.pieces.size());
    for (size_t k = 0; k < a.pieces.size(); ++k)
      CHECK(describe(b.pieces[k]) == describe(a.pieces[k]));
  }
}

TEST_CASE("checkpoint index: a tensor's shape and pieces are found by its name") {
  testing::TempDir tmp;
  const auto dir = committed(tmp.path(), 7);
  std::map<std::string, const CheckpointTensor*> by_name;
  const auto index = read_checkpoint_index(dir);
  for (const auto& t : index.tensors) by_name[t.name] = &t;
  REQUIRE(by_name.size() == 3);  // the names are distinct

  const auto& w = *by_name.at("model/layers.0.experts.w13");
  CHECK(w.shape == std::vector<int64_t>{4, 6});
  // Rows 2-3 live in rank 1's file, as that rank stored them.
  REQUIRE(w.pieces.size() == 2);
  CHECK(w.pieces[1].rank == 1);
  CHECK(w.pieces[1].file == index.rank_files[1]);
  CHECK(w.pieces[1].start == std::vector<int64_t>{2, 0});
  CHECK(w.pieces[1].shape == std::vector<int64_t>{2, 6});
  // The pieces cover the global tensor exactly once (rows 0-1 and 2-3).
  int64_t covered = 0;
  for (const auto& p : w.pieces) covered += p.shape[0] * p.shape[1];
  CHECK(covered == 4 * 6);

  const auto& scalar = *by_name.at("optim/step");
  CHECK(scalar.shape.empty());
  REQUIRE(scalar.pieces.size() == 1);
  CHECK(scalar.pieces[0].start.empty());
  CHECK(by_name.at("model/norm.weight")->pieces.at(0).crc32c == 0xFFFFFFFFu);
}

TEST_CASE("checkpoint index: a missing, uncommitted, truncated or damaged index names the file") {
  testing::TempDir tmp;
  const auto missing = tmp.file("no-such-step");
  CHECK_THROWS_AS(read_checkpoint_index(missing), CheckpointError);
  CHECK_THROWS_WITH(read_checkpoint_index(missing),
                    Contains(missing) && Contains("does not exist"));

  const auto dir = committed(tmp.path(), 3);
  const auto index_pb = (fs::path(dir) / kIndexName).string();
  const auto good = testing::read_file(index_pb);
  REQUIRE(good.size() > 40);

  SECTION("never committed: no marker") {
    fs::remove(fs::path(dir) / kCommitMarker);
    CHECK_THROWS_WITH(read_checkpoint_index(dir), Contains(dir) && Contains("never committed"));
  }
  SECTION("index missing") {
    fs::remove(index_pb);
    CHECK_THROWS_WITH(read_checkpoint_index(dir), Contains(index_pb));
  }
  SECTION("truncated in the payload") {
    fs::resize_file(index_pb, good.size() - 5);
    CHECK_THROWS_AS(read_checkpoint_index(dir), CheckpointError);
    CHECK_THROWS_WITH(read_checkpoint_index(dir), Contains(index_pb) && Contains("truncated"));
  }
  SECTION("truncated inside the header") {
    fs::resize_file(index_pb, 10);
    CHECK_THROWS_WITH(read_checkpoint_index(dir), Contains(index_pb) && Contains("truncated"));
  }
  SECTION("one byte of the payload flipped") {
    testing::flip_byte(index_pb, good.size() - 3);
    CHECK_THROWS_WITH(read_checkpoint_index(dir),
                      Contains(index_pb) && Contains("checksum mismatch"));
  }
  SECTION("another kind of file in its place") {
    testing::write_file(index_pb, "NOTANIDX" + good.substr(8));
    CHECK_THROWS_WITH(read_checkpoint_index(dir), Contains(index_pb) && Contains("bad magic"));
  }
  SECTION("a frame intact around bytes that are not an index") {
    // The frame's own checksum holds, so only the protobuf parse can notice.
    // Magic and version as the good file has them (framed_file.h: bytes 0-11).
    uint32_t version = 0;
    std::memcpy(&version, good.data() + 8, 4);
    write_framed_file(index_pb, good.data(), version, std::string(6, '\xff'));
    CHECK_THROWS_WITH(read_checkpoint_index(dir), Contains(index_pb) && Contains("does not parse"));
  }
  SECTION("a piece whose rank differs from its tensor's") {
    auto bad = two_rank_index();
    bad.step = 3;
    bad.tensors[0].pieces[1].start = {2};
    commit_checkpoint(dir, bad);
    CHECK_THROWS_WITH(read_checkpoint_index(dir), Contains(index_pb) &&
                                                      Contains("model/layers.0.experts.w13") &&
                                                      Contains("wrong rank"));
  }
}

TEST_CASE("checkpoint folders: named by step, listed in step order, pruned to the newest") {
  testing::TempDir tmp;
  const auto run = tmp.path();
  CHECK(checkpoint_dir("RUN", 120) == "RUN/checkpoints/step-00000120");
  CHECK(committed_checkpoints(run.string()).empty());  // no checkpoints folder yet

  for (int64_t step : {20, 100, 3}) loadable(run, step);
  fs::create_directories(checkpoint_dir(run.string(), 50));   // a save that never finished
  fs::create_directories(checkpoint_dir(run.string(), 200));  // one still being written
  fs::create_directories(run / "checkpoints" / "notes");      // not a checkpoint
  CHECK(committed_checkpoints(run.string()) ==
        std::vector<std::string>{checkpoint_dir(run.string(), 3), checkpoint_dir(run.string(), 20),
                                 checkpoint_dir(run.string(), 100)});

  prune_checkpoints(run.string(), 2);
  CHECK(committed_checkpoints(run.string()) ==
        std::vector<std::string>{checkpoint_dir(run.string(), 20),
                                 checkpoint_dir(run.string(), 100)});
  CHECK_FALSE(fs::exists(checkpoint_dir(run.string(), 50)));  // older than the newest committed
  CHECK(fs::exists(checkpoint_dir(run.string(), 200)));       // newer: may be a save in flight
  CHECK(fs::exists(run / "checkpoints" / "notes"));
  prune_checkpoints(run.string(), 0);  // keeps at least one
  CHECK(committed_checkpoints(run.string()) ==
        std::vector<std::string>{checkpoint_dir(run.string(), 100)});
}

TEST_CASE("checkpoint retention: a damaged newest checkpoint does not count, the good ones stay") {
  testing::TempDir tmp;
  const auto run = tmp.path();
  for (int64_t step : {10, 20, 30, 40}) loadable(run, step);
  const auto newest = checkpoint_dir(run.string(), 40);
  const auto rank_file = (fs::path(newest) / "rank-00000.safetensors").string();
  SECTION("a header byte changed") { testing::flip_byte(rank_file, 20); }
  SECTION("truncated") { fs::resize_file(rank_file, fs::file_size(rank_file) - 4); }
  SECTION("the rank file gone") { fs::remove(rank_file); }
  CHECK_THAT(checkpoint_damage(newest), Contains("rank-00000.safetensors"));
  CHECK(checkpoint_damage(checkpoint_dir(run.string(), 30)).empty());
  prune_checkpoints(run.string(), 2);
  // Two that load (20, 30) are kept, and the damaged 40 stays for inspection.
  CHECK(committed_checkpoints(run.string()) ==
        std::vector<std::string>{checkpoint_dir(run.string(), 20), checkpoint_dir(run.string(), 30),
                                 newest});
}

TEST_CASE("checkpoint index: damage to a rank file's header or size is named") {
  testing::TempDir tmp;
  const auto dir = loadable(tmp.path(), 5);
  const auto index = read_checkpoint_index(dir);
  CHECK(index.format_version == kCheckpointFormatVersion);
  const auto rank_file = (fs::path(dir) / "rank-00000.safetensors").string();
  CHECK(checked_rank_file(dir, index, 0) == fs::weakly_canonical(rank_file).string());
  const auto header = index.files[0].header_bytes;
  SECTION("a byte of the header (the rank's state) changed, size unchanged") {
    const auto bytes = testing::read_file(rank_file);
    const auto at = bytes.find(R"(\"5\")");  // the step, escaped in the metadata string
    REQUIRE(at != std::string::npos);
    auto changed = bytes;
    changed[at + 2] = '6';
    testing::write_file(rank_file, changed);
    CHECK_THROWS_WITH(checked_rank_file(dir, index, 0),
                      Contains(dir) && Contains("rank-00000.safetensors") &&
                          Contains("does not match the checksum"));
  }
  SECTION("truncated") {
    fs::resize_file(rank_file, header + 4);
    CHECK_THROWS_WITH(checked_rank_file(dir, index, 0),
                      Contains("rank-00000.safetensors") && Contains("truncated"));
  }
  SECTION("a folder in its place") {
    fs::remove(rank_file);
    fs::create_directories(rank_file);
    CHECK_THROWS_WITH(checked_rank_file(dir, index, 0),
                      Contains("rank-00000.safetensors") && Contains("not a regular file"));
  }
}

TEST_CASE("checkpoint index: fields that describe what cannot be are refused by name") {
  testing::TempDir tmp;
  const auto dir = loadable(tmp.path(), 5);
  const auto index_pb = (fs::path(dir) / kIndexName).string();
  auto refused = [&](auto edit, const std::string& what) {
    recommit(dir, edit);
    CHECK_THROWS_WITH(read_checkpoint_index(dir), Contains(index_pb) && Contains(what));
  };
  SECTION("a piece's range past its tensor") {
    refused([](CheckpointIndex& i) { i.tensors[0].pieces[0].start = {1}; },
            "lies outside the tensor's shape [3]");
  }
  SECTION("a piece larger than its file holds") {
    refused(
        [](CheckpointIndex& i) {
          i.tensors[0].shape = {int64_t{1} << 40};
          i.tensors[0].pieces[0].shape = {int64_t{1} << 40};
        },
        "holds");
  }
  SECTION("a negative start") {
    refused([](CheckpointIndex& i) { i.tensors[0].pieces[0].start = {-1}; }, "lies outside");
  }
  SECTION("an unknown dtype") {
    refused([](CheckpointIndex& i) { i.tensors[0].dtype = "Q4"; }, "dtype 'Q4'");
  }
  SECTION("a rank file outside the folder") {
    refused(
        [](CheckpointIndex& i) {
          i.rank_files = {"../../x.safetensors"};
          i.files[0].name = i.rank_files[0];
          i.tensors[0].pieces[0].file = i.rank_files[0];
        },
        "climbs out");
  }
  SECTION("a piece on a rank beyond the world") {
    refused([](CheckpointIndex& i) { i.tensors[0].pieces[0].rank = 3; }, "rank 3 of a world of 1");
  }
  SECTION("a piece naming another rank's file") {
    refused([](CheckpointIndex& i) { i.tensors[0].pieces[0].file = "rank-00007.safetensors"; },
            "names the file 'rank-00007.safetensors'");
  }
  SECTION("more dimensions than the limit") {
    refused(
        [](CheckpointIndex& i) {
          i.tensors[0].shape.assign(kMaxTensorDims + 1, 1);
          i.tensors[0].pieces[0].start.assign(kMaxTensorDims + 1, 0);
          i.tensors[0].pieces[0].shape.assign(kMaxTensorDims + 1, 1);
        },
        "dimensions, more than");
  }
  SECTION("the same tensor twice") {
    refused([](CheckpointIndex& i) { i.tensors.push_back(i.tensors[0]); }, "listed twice");
  }
  SECTION("another step than its folder's") {
    refused([](CheckpointIndex& i) { i.step = 6; }, "of step 6 but its folder is step 5");
  }
}

TEST_CASE("checkpoint index: format version 1 is read without header checks, a newer one refused") {
  testing::TempDir tmp;
  const auto dir = loadable(tmp.path(), 5);
  const auto index_pb = (fs::path(dir) / kIndexName).string();
  const auto good = testing::read_file(index_pb);
  const std::string payload = good.substr(24);  // framed_file.h: 24 bytes before the payload
  SECTION("version 1: the index as it was, without header records") {
    // Version 1 had no field 7 (files); a reader of version 1 ignores it.
    write_framed_file(index_pb, good.data(), 1, payload);
    const auto read = read_checkpoint_index(dir);
    CHECK(read.format_version == 1);
    CHECK(read.files.empty());
    testing::flip_byte((fs::path(dir) / "rank-00000.safetensors").string(), 20);
    CHECK(checkpoint_damage(dir).empty());  // said when resuming: headers not checked
  }
  SECTION("a newer version") {
    write_framed_file(index_pb, good.data(), kCheckpointFormatVersion + 1, payload);
    CHECK_THROWS_WITH(read_checkpoint_index(dir),
                      Contains(index_pb) && Contains("newer than this moxie reads"));
  }
}

TEST_CASE("checkpoint commit: a folder that cannot be written names the file and commits nothing") {
  testing::TempDir tmp;
  const auto dir = tmp.file("gone/step-00000001");  // its parent does not exist
  CHECK_THROWS_AS(commit_checkpoint(dir, two_rank_index()), CheckpointError);
  CHECK_THROWS_WITH(
      commit_checkpoint(dir, two_rank_index()),
      Contains(dir + "/" + kIndexName) && Contains("earlier checkpoints are untouched"));
  CHECK_FALSE(is_committed(dir));
}

TEST_CASE("checkpoint checksum is CRC32C") {
  CHECK(checksum("123456789", 9) == 0xE3069283u);  // the CRC catalogue's check value for CRC-32C
  CHECK(checksum("", 0) == 0u);
}
