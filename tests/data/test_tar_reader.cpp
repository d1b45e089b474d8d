// WebDataset tar reading (data/tar_reader.h) on archives the test writes
// byte by byte after POSIX ustar (pax's "ustar Interchange Format"), so that
// names and entry types the tar command would refuse or rewrite (absolute
// paths, "..", links, devices) reach the reader as they are: every regular
// member in order with its bytes, keys and extensions after WebDataset,
// members of one key grouped into one sample, and one DatasetError naming the
// tar and the entry for anything unsafe or damaged.
#include <sys/stat.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <set>

#include "data/byte_tokenizer.h"
#include "data/dataset.h"
#include "data/manifest.h"
#include "data/shard_io.h"
#include "data/tar_reader.h"
#include "tests/testing.h"

using namespace moxie;
using Catch::Contains;
namespace fs = std::filesystem;

namespace {

struct Member {
  std::string name, bytes;
  char type =
      '0';  // ustar typeflag: 0 file, 1 hard link, 2 symlink, 3 char device, 5 folder, 6 FIFO
  std::string link = {};  // the target of a link
  uint64_t claimed = 0;   // when not 0, the size the header gives instead of the data's
};

void put_octal(std::string& block, size_t at, size_t width, uint64_t value) {
  std::snprintf(&block[at], width, "%0*llo", static_cast<int>(width - 1),
                static_cast<unsigned long long>(value));
}

// One 512-byte ustar header. A name over 100 bytes is split at a '/' into
// prefix (155) and name (100), as the format allows.
std::string header(const Member& m) {
  std::string block(512, '\0');
  std::string prefix, name = m.name;
  if (name.size() > 100) {
    const size_t slash = name.rfind('/', name.size() - 1);
    REQUIRE(slash != std::string::npos);
    prefix = name.substr(0, slash);
    name = name.substr(slash + 1);
  }
  REQUIRE(name.size() <= 100);
  REQUIRE(prefix.size() <= 155);
  block.replace(0, name.size(), name);
  put_octal(block, 100, 8, m.type == '5' ? 0755 : 0644);
  put_octal(block, 108, 8, 0);  // uid
  put_octal(block, 116, 8, 0);  // gid
  put_octal(block, 124, 12, m.claimed ? m.claimed : m.type == '0' ? m.bytes.size() : 0);
  put_octal(block, 136, 12, 1700000000);  // mtime
  block[156] = m.type;
  block.replace(157, m.link.size(), m.link);
  block.replace(257, 6, std::string("ustar\0", 6));
  block.replace(263, 2, "00");
  block.replace(345, prefix.size(), prefix);
  // The checksum: the sum of the header's bytes, its own field read as spaces.
  block.replace(148, 8, 8, ' ');
  unsigned sum = 0;
  for (unsigned char c : block) sum += c;
  std::snprintf(&block[148], 7, "%06o", sum);
  block[154] = '\0';
  block[155] = ' ';
  return block;
}

// The archive's bytes: each member's header and data padded to 512, then the
// two zero blocks that end a tar.
std::string tar_bytes(const std::vector<Member>& members) {
  std::string out;
  for (const auto& m : members) {
    out += header(m);
    if (m.type == '0') {
      out += m.bytes;
      out.append((512 - m.bytes.size() % 512) % 512, '\0');
    }
  }
  out.append(1024, '\0');
  return out;
}

std::vector<std::pair<std::string, std::string>> read_all(const std::string& tar) {
  std::vector<std::pair<std::string, std::string>> got;
  for_each_tar_file(
      tar, [&](const std::string& name, std::string bytes) { got.emplace_back(name, bytes); });
  return got;
}

}  // namespace

TEST_CASE("tar: every regular member, in archive order, with its bytes") {
  testing::TempDir tmp;
  const auto tar = tmp.file("shard.tar");
  const std::string big(1300, 'x');  // spans three data blocks
  const std::string long_dir(120, 'd');
  testing::write_file(tar, tar_bytes({{"samples/", "", '5'},
                                      {"samples/0002.txt", "second"},
                                      {"samples/0001.txt", "first, though later"},
                                      {"samples/0001.bin", big},
                                      {"samples/empty.txt", ""},
                                      {long_dir + "/0003.txt", "a name of 129 bytes"}}));
  const auto got = read_all(tar);
  // Folders are skipped; files keep the archive's order (not sorted).
  REQUIRE(got.size() == 5);
  CHECK(got[0] == std::make_pair(std::string("samples/0002.txt"), std::string("second")));
  CHECK(got[1] ==
        std::make_pair(std::string("samples/0001.txt"), std::string("first, though later")));
  CHECK(got[2].first == "samples/0001.bin");
  CHECK(got[2].second == big);
  CHECK(got[3] == std::make_pair(std::string("samples/empty.txt"), std::string()));
  CHECK(got[4].first == long_dir + "/0003.txt");  // prefix and name joined
  CHECK(got[4].second == "a name of 129 bytes");

  testing::write_file(tar, tar_bytes({}));
  CHECK(read_all(tar).empty());
}

TEST_CASE("tar: keys and extensions split at the first dot of the last component") {
  using P = std::pair<std::string, std::string>;
  CHECK(split_key("dir/0001.seg.png") == P{"dir/0001", "seg.png"});
  CHECK(split_key("0001.txt") == P{"0001", "txt"});
  CHECK(split_key("a.b/c.d/e.wav") == P{"a.b/c.d/e", "wav"});  // dots in folders do not count
  CHECK(split_key("dir/README") == P{"dir/README", ""});
  CHECK(split_key("a.b/noext") == P{"a.b/noext", ""});
}

TEST_CASE("tar: consecutive members of one key become one sample of the dataset") {
  testing::TempDir tmp;
  const auto src = tmp.path() / "src";
  testing::write_file(src / "shard.tar", tar_bytes({{"0001.txt", "one"},
                                                    {"0001.md", "# one again"},
                                                    {"0002.txt", "two"},
                                                    {"0001.rst", "one, but not next to its key"}}));
  BuildOptions o;
  o.source_dir = src.string();
  o.out_dir = (tmp.path() / "ds").string();
  o.allow_unknown_license = true;
  const auto summary = build_dataset(o);
  // WebDataset groups adjacent members only: 0001.rst after 0002 is a sample of its own.
  REQUIRE(summary.samples == 3);
  const auto manifest = read_manifest(o.out_dir + "/manifest.pb");
  REQUIRE(manifest.shards_size() == 1);
  ShardReader shard(o.out_dir + "/" + manifest.shards(0).path());
  REQUIRE(shard.size() == 3);
  const ByteTokenizer bytes;
  auto texts = [&](size_t i) {
    std::vector<std::string> out;
    const auto sample = shard.read(i);
    for (const auto& seg : sample.segments()) out.push_back(bytes.decode(text_tokens(seg.text())));
    std::sort(out.begin(), out.end());  // the builder orders a sample's segments itself
    return out;
  };
  CHECK(texts(0) == std::vector<std::string>{"# one again", "one"});
  CHECK(texts(1) == std::vector<std::string>{"two"});
  CHECK(texts(2) == std::vector<std::string>{"one, but not next to its key"});
  // Each member is a source of its own, named inside its tar.
  std::set<std::string> uris;
  for (const auto& s : manifest.sources()) uris.insert(s.uri());
  CHECK(uris == std::set<std::string>{"shard.tar/0001.txt", "shard.tar/0001.md",
                                      "shard.tar/0002.txt", "shard.tar/0001.rst"});
  CHECK(shard.sources(0).size() == 2);
}

TEST_CASE("tar: unsafe names, links and special files refuse the archive, naming the entry") {
  testing::TempDir tmp;
  const auto tar = tmp.file("bad.tar");
  struct Case {
    Member bad;
    std::string why;
  };
  const std::vector<Case> cases = {
      {{"/etc/passwd", "x"}, "absolute path"},
      {{"../outside.txt", "x"}, "'..' component"},
      {{"samples/../../outside.txt", "x"}, "'..' component"},
      {{"samples/..", "x"}, "'..' component"},
      {{"samples\\0001.txt", "x"}, "backslash"},
      {{"samples/link.txt", "", '2', "/etc/passwd"}, "link or special file"},
      {{"samples/hard.txt", "", '1', "samples/0001.txt"}, "link or special file"},
      {{"samples/tty", "", '3'}, "link or special file"},
      {{"samples/pipe", "", '6'}, "link or special file"},
  };
  for (const auto& c : cases) {
    INFO("entry '" << c.bad.name << "' (type " << c.bad.type << ")");
    // After a good member, so that refusing is not just failing to open.
    testing::write_file(tar, tar_bytes({{"samples/0001.txt", "fine"}, c.bad}));
    std::vector<std::string> seen;
    CHECK_THROWS_AS(
        for_each_tar_file(tar, [&](const std::string& n, std::string) { seen.push_back(n); }),
        DatasetError);
    CHECK_THROWS_WITH(read_all(tar),
                      Contains(tar) && Contains("'" + c.bad.name + "'") && Contains(c.why));
    CHECK(seen ==
          std::vector<std::string>{"samples/0001.txt"});  // nothing of the bad entry was passed on
  }
  // Names that only look like climbing out are fine.
  testing::write_file(tar, tar_bytes({{"samples/..data.txt", "a"}, {"samples/a..b/c.txt", "b"}}));
  CHECK(read_all(tar).size() == 2);
}

TEST_CASE("tar: a damaged, truncated or missing archive names the tar") {
  testing::TempDir tmp;
  const auto tar = tmp.file("shard.tar");
  const std::string payload(2000, 'p');
  const auto good = tar_bytes({{"0001.txt", "first"}, {"0002.bin", payload}});

  SECTION("missing") {
    CHECK_THROWS_WITH(read_all(tmp.file("absent.tar")), Contains(tmp.file("absent.tar")));
  }
  SECTION("truncated inside a member's data") {
    testing::write_file(tar, good.substr(0, 1024 + 512 + 700));
    CHECK_THROWS_AS(read_all(tar), DatasetError);
    CHECK_THROWS_WITH(read_all(tar), Contains(tar) && Contains("truncated"));
  }
  SECTION("truncated inside a header") {
    testing::write_file(tar, good.substr(0, 1024 + 100));
    CHECK_THROWS_WITH(read_all(tar),
                      Contains(tar) && (Contains("truncated") || Contains("damaged")));
  }
  SECTION("a header whose checksum does not match") {
    testing::write_file(tar, good);
    testing::flip_byte(tar, 1024 + 2);  // the second header's name
    CHECK_THROWS_WITH(read_all(tar), Contains(tar) && Contains("damaged"));
  }
  SECTION("not a tar at all") {
    std::string noise(4096, '\0');
    for (size_t i = 0; i < noise.size(); ++i) noise[i] = static_cast<char>((i * 2654435761u) >> 13);
    testing::write_file(tar, noise);
    CHECK_THROWS_AS(read_all(tar), DatasetError);
    CHECK_THROWS_WITH(read_all(tar), Contains(tar));
  }
}

TEST_CASE(
    "tar: a member claiming more bytes than the archive or the limit, or a FIFO, is refused") {
  testing::TempDir tmp;
  const auto tar = tmp.file("shard.tar");
  SECTION("more than the tar holds") {
    testing::write_file(tar, tar_bytes({{"0001.txt", "short", '0', {}, 40000}}));
    CHECK_THROWS_WITH(read_all(tar), Contains(tar) && Contains("'0001.txt' claims 40000 bytes") &&
                                         Contains("more than the tar's"));
  }
  SECTION("more than the limit, whatever the tar") {
    const uint64_t octal_max = (uint64_t{1} << 33) - 1;  // 11 octal digits
    REQUIRE(octal_max > kMaxTarEntryBytes);
    const auto bomb = tar_bytes({{"0001.bin", "x", '0', {}, octal_max}});
    CHECK_THROWS_WITH(for_each_tar_file_in(bomb, "mem.tar", [](const std::string&, std::string) {}),
                      Contains("mem.tar") && Contains(std::to_string(octal_max) + " bytes"));
  }
  SECTION("a FIFO or a folder at the tar's path") {
    const auto fifo = tmp.file("pipe.tar");
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    CHECK_THROWS_AS(read_all(fifo), DatasetError);
    CHECK_THROWS_WITH(read_all(fifo), Contains(fifo) && Contains("FIFO"));
    fs::create_directory(tmp.file("dir.tar"));
    CHECK_THROWS_WITH(read_all(tmp.file("dir.tar")), Contains("dir.tar") && Contains("directory"));
  }
}
