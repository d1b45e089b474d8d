// Safe file input and output (core/common/file_io.h): only regular files are
// read (a FIFO or directory is refused by name without blocking), outputs
// never write through a link planted at their temporary or final name, paths
// from manifests stay in their folder, and counts read from files are bounded.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "core/common/file_io.h"
#include "core/common/framed_file.h"
#include "tests/testing.h"

using namespace moxie;
using Catch::Contains;
namespace fs = std::filesystem;

TEST_CASE("file_io: a FIFO, a directory or a missing file is refused by name without blocking") {
  testing::TempDir dir;
  const auto fifo = dir.file("pipe");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK_THROWS_WITH(InputFile(fifo, "shard"), Contains(fifo) && Contains("is a FIFO"));
  CHECK_THROWS_WITH(read_small_file(dir.path().string(), "config", 1024),
                    Contains("is a directory") && Contains("config"));
  CHECK_THROWS_WITH(InputFile(dir.file("absent"), "image"),
                    Contains("cannot open image") && Contains("absent"));
  CHECK(file_kind(fifo) == "a FIFO");
  CHECK(file_kind(dir.file("absent")) == "missing");
}

TEST_CASE("file_io: reads stay inside the file and whole reads are bounded before allocating") {
  testing::TempDir dir;
  testing::write_file(dir.file("f"), "0123456789");
  InputFile in(dir.file("f"), "index");
  CHECK(in.size() == 10);
  char buf[4];
  in.read_at(6, buf, 4);
  CHECK(std::string(buf, 4) == "6789");
  CHECK_THROWS_WITH(in.read_at(8, buf, 4), Contains("past its end") && Contains("offset 8"));
  CHECK_THROWS_WITH(in.read_at(~uint64_t{0}, buf, 4), Contains("past its end"));
  CHECK(in.read_all(10) == "0123456789");
  CHECK_THROWS_WITH(in.read_all(9), Contains("10 bytes, more than the 9"));
  CHECK_THROWS_WITH(checked_count(1ull << 40, 1u << 20, "x.bin", "tensor count"),
                    Contains("x.bin: tensor count is 1099511627776, more than 1048576"));
  CHECK(checked_count(7, 7, "x.bin", "n") == 7);
}

TEST_CASE(
    "file_io: a link planted at the temporary or the final name leaves its target untouched") {
  testing::TempDir dir;
  const auto victim = dir.file("victim");
  testing::write_file(victim, "precious");
  const auto out = dir.file("out.bin");
  REQUIRE(::symlink(victim.c_str(), (out + ".tmp").c_str()) == 0);
  write_file_atomically(out, "new bytes", "metrics");
  CHECK(testing::read_file(victim) == "precious");
  CHECK(testing::read_file(out) == "new bytes");
  CHECK(!fs::exists(fs::symlink_status(out + ".tmp")));

  // At the final name: the rename replaces the link itself.
  const auto linked = dir.file("linked.bin");
  REQUIRE(::symlink(victim.c_str(), linked.c_str()) == 0);
  write_file_atomically(linked, "other", "config");
  CHECK(testing::read_file(victim) == "precious");
  CHECK(!fs::is_symlink(linked));
  CHECK(testing::read_file(linked) == "other");

  // Framed files (manifests, checkpoint indexes) go the same way.
  const auto framed = dir.file("index.pb");
  REQUIRE(::symlink(victim.c_str(), (framed + ".tmp").c_str()) == 0);
  write_framed_file(framed, "MOXIETST", 1, "payload");
  CHECK(testing::read_file(victim) == "precious");
  CHECK(read_framed_file(framed, "MOXIETST", 1) == "payload");

  // An append-only file refuses a link at its name instead of writing through it.
  const auto log = dir.file("metrics.jsonl");
  REQUIRE(::symlink(victim.c_str(), log.c_str()) == 0);
  CHECK_THROWS_WITH(AppendFile(log, "metrics", true), Contains("symbolic link") && Contains(log));
  CHECK(testing::read_file(victim) == "precious");
}

TEST_CASE("file_io: an output abandoned before commit leaves the old file and no temporary") {
  testing::TempDir dir;
  const auto path = dir.file("config.yaml");
  testing::write_file(path, "old");
  {
    OutputFile out(path, "config");
    out.write("half of a ne");
  }
  CHECK(testing::read_file(path) == "old");
  CHECK(!fs::exists(path + ".tmp"));
}

TEST_CASE("file_io: paths from a manifest resolve inside its folder only") {
  testing::TempDir dir;
  fs::create_directories(dir.path() / "data" / "sub");
  testing::write_file(dir.path() / "data" / "sub" / "a.shard", "x");
  testing::write_file(dir.path() / "secret", "s");
  const auto data = dir.path() / "data";
  CHECK(resolve_inside(data, "sub/a.shard", "manifest") ==
        fs::weakly_canonical(data / "sub" / "a.shard"));
  CHECK_THROWS_WITH(resolve_inside(data, "../secret", "manifest"), Contains("'..'"));
  CHECK_THROWS_WITH(resolve_inside(data, "/etc/passwd", "manifest"), Contains("absolute"));
  CHECK_THROWS_WITH(resolve_inside(data, "", "manifest"), Contains("empty"));
  REQUIRE(::symlink((dir.path() / "secret").c_str(), (data / "out").c_str()) == 0);
  CHECK_THROWS_WITH(resolve_inside(data, "out", "checkpoint index"),
                    Contains("leads out of the folder") && Contains("checkpoint index"));
}

TEST_CASE("file_io: an excerpt of a mis-pointed file is short and printable") {
  const std::string binary = std::string(
                                 "\x7f"
                                 "ELF\x02\x01",
                                 6) +
                             std::string(500, 'A');
  const auto e = excerpt(binary, 12);
  CHECK(e == "\\x7fELF\\x02\\x01AAAAAA...");
  CHECK(excerpt("short") == "short");
}
