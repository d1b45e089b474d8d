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

  for (int64_t step : {20, 100, 3}) committed(run, step);
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
