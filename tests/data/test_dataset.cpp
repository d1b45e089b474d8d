// Building a text dataset: licences decided before anything is written, one
// source per file with its sha256, and verify() finding every kind of damage.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "data/byte_tokenizer.h"
#include "data/dataset.h"
#include "data/manifest.h"
#include "data/shard_io.h"
#include "tests/testing.h"

using namespace moxie;
namespace fs = std::filesystem;

namespace {

using testing::write_file;

fs::path fresh_dir(const std::string& name) {
  return testing::fresh_dir(fs::path("moxie_dataset_test") / name);
}

// docs/a.txt, docs/b.md, other/c.rst, and a file of another kind.
fs::path make_source(const std::string& name) {
  auto src = fresh_dir(name + "_src");
  write_file(src / "docs/a.txt", "alpha text\n");
  write_file(src / "docs/b.md", "# bravo\nmarkdown\n");
  write_file(src / "other/c.rst", "charlie\n=======\n");
  write_file(src / "other/ignored.bin", "not text");
  return src;
}

}  // namespace

TEST_CASE("a text dataset keeps every file as one sample with its source and licence") {
  const auto src = make_source("ok");
  const auto out = fresh_dir("ok_out");
  write_file(out.parent_path() / "ok.sources.yaml",
             "sources:\n  - {path: docs/, license: CC-BY-4.0, creator: Docs Team}\n"
             "  - {path: '', license: MIT}\n");
  BuildOptions o;
  o.source_dir = src.string();
  o.out_dir = (out / "ds").string();
  o.sources_file = (out.parent_path() / "ok.sources.yaml").string();
  o.samples_per_shard = 2;
  const auto summary = build_dataset(o);
  CHECK(summary.samples == 3);
  CHECK(summary.shards == 2);
  CHECK(summary.samples_per_license ==
        std::map<std::string, uint64_t>{{"CC-BY-4.0", 2}, {"MIT", 1}});

  const auto manifest = read_manifest(o.out_dir + "/manifest.pb");
  REQUIRE(manifest.sources_size() == 3);
  CHECK(manifest.sources(0).uri() == "docs/a.txt");
  CHECK(manifest.sources(0).creator() == "Docs Team");
  CHECK(hex(manifest.sources(0).sha256()) == hex(sha256_of_file((src / "docs/a.txt").string())));
  CHECK(manifest.sources(2).license() == "MIT");
  CHECK(manifest.sources(2).lineage(0).tool() == "moxie data build");
  // The sample is the file's text, token for token.
  ShardReader second(o.out_dir + "/" + manifest.shards(1).path());
  const auto sample = second.read(0);
  CHECK(sample.id() == 2);
  const auto ids = text_tokens(sample.segments(0).text());
  CHECK(ByteTokenizer().decode(ids) == "charlie\n=======\n");
  CHECK(verify_dataset(o.out_dir).empty());
  CHECK_THAT(describe_dataset(o.out_dir),
             Catch::Contains("3 samples") && Catch::Contains("MIT: 1"));
  CHECK_THAT(describe_sample(o.out_dir, 2), Catch::Contains("other/c.rst, licence MIT"));
  // A second build into the same folder is refused: nothing is overwritten.
  CHECK_THROWS_WITH(build_dataset(o), Catch::Contains("already holds a dataset"));
}

TEST_CASE("a file without a licence is refused unless unknown licences are allowed") {
  const auto src = make_source("nolicence");
  const auto out = fresh_dir("nolicence_out");
  write_file(out / "docs.sources.yaml", "sources:\n  - {path: docs/, license: CC0-1.0}\n");
  BuildOptions o;
  o.source_dir = src.string();
  o.out_dir = (out / "ds").string();
  o.sources_file = (out / "docs.sources.yaml").string();
  CHECK_THROWS_WITH(build_dataset(o), Catch::Contains("no licence for other/c.rst") &&
                                          Catch::Contains("--allow-unknown-license"));
  CHECK_FALSE(fs::exists(o.out_dir));  // refused before anything was written
  o.allow_unknown_license = true;
  CHECK(build_dataset(o).samples_per_license.at("unknown") == 1);
  write_file(out / "bad.sources.yaml", "sources:\n  - {path: docs/}\n");
  o.sources_file = (out / "bad.sources.yaml").string();
  o.out_dir = (out / "ds2").string();
  CHECK_THROWS_WITH(build_dataset(o), Catch::Contains("entry 1: needs a 'license'"));
}

TEST_CASE("verify names the damaged shard, and a damaged manifest is refused") {
  const auto src = make_source("damage");
  const auto out = fresh_dir("damage_out");
  BuildOptions o;
  o.source_dir = src.string();
  o.out_dir = (out / "ds").string();
  o.allow_unknown_license = true;
  build_dataset(o);
  const auto shard = o.out_dir + "/shard-00000.shard";
  {
    std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(40);
    f.put('#');
  }
  const auto problems = verify_dataset(o.out_dir);
  REQUIRE(problems.size() >= 2);
  CHECK_THAT(problems[0], Catch::Contains(shard) && Catch::Contains("sha256 differs"));
  CHECK_THAT(problems[1], Catch::Contains("at byte 16") && Catch::Contains("checksum mismatch"));

  const auto manifest = o.out_dir + "/manifest.pb";
  fs::resize_file(manifest, fs::file_size(manifest) - 3);
  CHECK_THROWS_WITH(read_manifest(manifest), Catch::Contains("checksum mismatch or truncated"));
}
