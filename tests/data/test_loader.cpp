// The loader: one epoch is the dataset exactly once on 1-4 data-parallel
// ranks in one global order; resuming (also on another number of ranks)
// continues exactly; damage is skipped and logged, or fails, as configured.
#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include "data/byte_tokenizer.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "tests/testing.h"

using namespace moxie;
namespace fs = std::filesystem;

namespace {

using testing::flip_byte;

fs::path fresh_dir(const std::string& name) {
  return testing::fresh_dir(fs::path("moxie_loader_test") / name);
}

// n text files of 1..120 bytes; file i's text starts with its number.
std::string make_dataset(const std::string& name, int n, uint64_t per_shard = 16) {
  const auto src = fresh_dir(name + "_src");
  std::mt19937 rng(7);
  for (int i = 0; i < n; ++i) {
    char file[32];
    std::snprintf(file, sizeof(file), "doc%04d.txt", i);
    std::string text = std::to_string(i) + ":";
    const int len = 1 + static_cast<int>(rng() % 120);
    while (static_cast<int>(text.size()) < len) text += static_cast<char>('a' + rng() % 26);
    std::ofstream(src / file) << text;
  }
  BuildOptions o;
  o.source_dir = src.string();
  o.out_dir = (fresh_dir(name) / "ds").string();
  o.allow_unknown_license = true;
  o.samples_per_shard = per_shard;
  build_dataset(o);
  return o.out_dir;
}

LoaderOptions options(const std::string& path, int64_t rows, int64_t rank, int64_t dp) {
  LoaderOptions o;
  o.path = path;
  o.seed = 11;
  o.seq_len = 31;
  o.rows_per_rank = rows;
  o.dp_rank = rank;
  o.dp_size = dp;
  o.shuffle_block = 8;
  o.prefetch_threads = 0;
  o.log = [](const std::string&) {};
  return o;
}

// A global batch as the concatenation of every rank's rows.
struct Global {
  std::vector<int32_t> tokens, doc_starts;
  std::vector<std::tuple<uint64_t, uint32_t, uint32_t>> pieces;
  std::vector<bool> ends;  // the piece ends with the sample's EOS
  LoaderState after;
};

std::vector<Global> run(const std::string& path, int64_t rows, int64_t dp, int batches,
                        const LoaderState* resume = nullptr, int threads = 0) {
  std::vector<std::unique_ptr<DatasetLoader>> ranks;
  for (int64_t r = 0; r < dp; ++r) {
    auto o = options(path, rows, r, dp);
    o.prefetch_threads = threads;
    ranks.push_back(std::make_unique<DatasetLoader>(o, resume));
  }
  std::vector<Global> out;
  for (int b = 0; b < batches; ++b) {
    Global g;
    for (auto& loader : ranks) {
      auto p = loader->next();
      g.tokens.insert(g.tokens.end(), p.tokens.begin(), p.tokens.end());
      for (const auto& piece : p.pieces) g.pieces.emplace_back(piece.sample, piece.from, piece.to);
      g.after = p.after;
      CHECK(loader->state() == p.after);
    }
    out.push_back(std::move(g));
  }
  return out;
}

}  // namespace

TEST_CASE("one epoch on 1, 2, 3 and 4 DP ranks is the dataset exactly once, in one global order") {
  const auto path = make_dataset("epoch", 150);
  const auto info = read_dataset_info(path);
  REQUIRE(info.samples == 150);
  std::vector<Global> reference;
  for (int64_t dp : {1, 2, 3, 4}) {
    CAPTURE(dp);
    const int64_t rows = 12 / dp;  // a global batch of 12 rows of 32 positions
    std::vector<std::unique_ptr<DatasetLoader>> ranks;
    for (int64_t r = 0; r < dp; ++r)
      ranks.push_back(std::make_unique<DatasetLoader>(options(path, rows, r, dp)));
    std::vector<Global> global;
    bool epoch_done = false;
    while (!epoch_done) {
      Global g;
      for (auto& loader : ranks) {
        auto p = loader->next();
        for (const auto& piece : p.pieces) {
          g.pieces.emplace_back(piece.sample, piece.from, piece.to);
          // Rows hold the samples' tokens where the pieces say.
          const int32_t first = p.tokens[static_cast<size_t>(piece.row * p.row_len + piece.col)];
          if (piece.from == 0) CHECK(first == ByteTokenizer::kBos);
          if (piece.from == 1)
            CHECK(first == static_cast<int32_t>(std::to_string(piece.sample)[0]));
          const auto last =
              static_cast<size_t>(piece.row * p.row_len + piece.col + (piece.to - piece.from) - 1);
          g.ends.push_back(p.tokens[last] == ByteTokenizer::kEos);
        }
        g.tokens.insert(g.tokens.end(), p.tokens.begin(), p.tokens.end());
        epoch_done = p.after.epoch >= 1;
      }
      global.push_back(std::move(g));
    }
    // Walking the pieces in stream order (batch, rank, row): each sample is
    // continued exactly where it stopped, until every sample is complete:
    // no position twice, none missed, and only then the next epoch.
    std::map<uint64_t, uint32_t> done;
    std::set<uint64_t> complete;
    for (const auto& g : global) {
      for (size_t k = 0; k < g.pieces.size() && complete.size() < info.samples; ++k) {
        const auto& [id, from, to] = g.pieces[k];
        CAPTURE(id);
        REQUIRE(complete.count(id) == 0);
        REQUIRE(from == done[id]);
        done[id] = to;
        if (g.ends[k]) complete.insert(id);
      }
    }
    CHECK(complete.size() == info.samples);
    REQUIRE(done.size() == info.samples);
    if (reference.empty()) {
      reference = global;
    } else {
      REQUIRE(global.size() == reference.size());
      for (size_t b = 0; b < global.size(); ++b) {
        CHECK(global[b].tokens == reference[b].tokens);
        CHECK(global[b].pieces == reference[b].pieces);
      }
    }
  }
}

TEST_CASE("resuming from a state continues exactly, also on another number of DP ranks") {
  const auto path = make_dataset("resume", 90);
  const auto straight = run(path, 4, 2, 14);  // 8 rows per global batch, dp 2
  for (int64_t dp : {1, 2, 4}) {
    CAPTURE(dp);
    const auto state = LoaderState::parse(straight[5].after.to_string());
    CHECK(state == straight[5].after);
    const auto resumed = run(path, 8 / dp, dp, 8, &state);
    for (size_t b = 0; b < resumed.size(); ++b) {
      CAPTURE(b);
      CHECK(resumed[b].tokens == straight[6 + b].tokens);
      CHECK(resumed[b].pieces == straight[6 + b].pieces);
      CHECK(resumed[b].after == straight[6 + b].after);
    }
  }
  // Prefetch threads change nothing.
  const auto threaded = run(path, 4, 2, 14, nullptr, 3);
  for (size_t b = 0; b < straight.size(); ++b) CHECK(threaded[b].tokens == straight[b].tokens);
}

TEST_CASE("a resume state from another dataset or seed, or a malformed one, is refused") {
  const auto path = make_dataset("wrong_state", 20);
  auto state = run(path, 2, 1, 3).back().after;
  state.manifest_sha256 = std::string(64, '0');
  CHECK_THROWS_WITH(DatasetLoader(options(path, 2, 0, 1), &state),
                    Catch::Contains("manifest sha256 0000") && Catch::Contains("point data.path"));
  state = run(path, 2, 1, 3).back().after;
  state.seed = 5;
  CHECK_THROWS_WITH(DatasetLoader(options(path, 2, 0, 1), &state), Catch::Contains("seed 5"));
  CHECK_THROWS_WITH(LoaderState::parse("seed=1 epoch=x"),
                    Catch::Contains("epoch=x is not a number"));
  CHECK_THROWS_WITH(LoaderState::parse("seed=1"), Catch::Contains("lacks epoch"));
}

TEST_CASE("a damaged record is skipped and logged, or fails the run, as configured") {
  const auto path = make_dataset("flip", 40, 40);
  const std::string shard = path + "/shard-00000.shard";
  // Inside the payload of a record in the middle of the shard.
  flip_byte(shard, fs::file_size(shard) / 2);

  auto o = options(path, 4, 0, 1);
  o.verify_shards = true;  // not the default: the shard's hash is checked too
  std::vector<std::string> logged;
  o.log = [&](const std::string& line) { logged.push_back(line); };
  {
    DatasetLoader loader(o);
    uint64_t skipped = 0;
    for (int b = 0; b < 40; ++b) skipped += loader.next().skipped_ids.size();
    CHECK(skipped >= 1);
    CHECK(loader.skipped() >= 1);
  }
  // The shard's hash (a background thread under skip) and the record's CRC
  // both report it, in either order.
  REQUIRE(logged.size() >= 2);
  auto any = [&](auto&& matcher) {
    return std::any_of(logged.begin(), logged.end(),
                       [&](const std::string& l) { return matcher.match(l); });
  };
  CHECK(any(Catch::Contains("sha256 differs from the manifest")));
  CHECK(any(Catch::Contains("shard-00000.shard, byte") && Catch::Contains("source doc00") &&
            Catch::Contains("checksum mismatch")));

  o.max_skipped = 0;
  CHECK_THROWS_WITH(
      [&] {
        DatasetLoader loader(o);
        for (int b = 0; b < 40; ++b) loader.next();
      }(),
      Catch::Contains("more than data.max_skipped=0"));

  o.on_corrupt = OnCorrupt::kFail;
  CHECK_THROWS_WITH(
      [&] {
        DatasetLoader loader(o);
        for (int b = 0; b < 40; ++b) loader.next();
      }(),
      Catch::Contains("sha256 differs") && Catch::Contains("moxie data verify"));
  o.verify_shards = false;
  CHECK_THROWS_WITH(
      [&] {
        DatasetLoader loader(o);
        for (int b = 0; b < 40; ++b) loader.next();
      }(),
      Catch::Contains("checksum mismatch") && Catch::Contains("source doc00"));
}

TEST_CASE("a truncated shard fails at open, or its samples are skipped, as configured") {
  const auto path = make_dataset("truncated", 40, 10);
  const std::string shard = path + "/shard-00001.shard";
  fs::resize_file(shard, fs::file_size(shard) - 30);
  auto o = options(path, 4, 0, 1);
  o.on_corrupt = OnCorrupt::kFail;
  CHECK_THROWS_WITH(DatasetLoader(o),
                    Catch::Contains("shard-00001.shard") && Catch::Contains("truncated"));
  o.on_corrupt = OnCorrupt::kSkip;
  std::vector<std::string> logged;
  o.log = [&](const std::string& line) { logged.push_back(line); };
  DatasetLoader loader(o);
  CHECK(loader.skipped() == 10);
  REQUIRE(logged.size() == 1);
  CHECK_THAT(logged[0], Catch::Contains("skipping all 10 samples"));
  // The other 30 samples are all served in the first epoch; none from shard 1.
  std::set<uint64_t> seen;
  while (true) {
    auto b = loader.next();
    for (const auto& p : b.pieces) {
      CHECK((p.sample < 10 || p.sample >= 20));
      if (b.before.epoch == 0) seen.insert(p.sample);
    }
    if (b.after.epoch >= 1) break;
  }
  CHECK(seen.size() == 30);
  o.max_skipped = 5;
  CHECK_THROWS_WITH(DatasetLoader(o), Catch::Contains("more than data.max_skipped=5"));
}

TEST_CASE("a missing dataset or a damaged manifest is one clear error") {
  CHECK_THROWS_WITH(DatasetLoader(options("/nonexistent/ds", 1, 0, 1)),
                    Catch::Contains("holds no dataset") && Catch::Contains("moxie data build"));
  const auto path = make_dataset("manifest", 5);
  flip_byte(path + "/manifest.pb", 30);
  CHECK_THROWS_WITH(DatasetLoader(options(path, 1, 0, 1)),
                    Catch::Contains("manifest.pb: checksum mismatch"));
}

TEST_CASE(
    "SFT records: only responses and the EOS after the last are targets, and a record that fits a "
    "row is never cut") {
  // Prompts in upper case (and the template's characters), responses in
  // digits: the naive reference for which targets count is the character.
  const auto src = fresh_dir("sft_src");
  std::mt19937 rng(3);
  auto word = [&](char base, int len) {
    std::string s;
    for (int i = 0; i < len; ++i) s += static_cast<char>(base + rng() % (base == '0' ? 10 : 26));
    return s;
  };
  {
    std::ofstream lines(src / "chat.jsonl");
    for (int i = 0; i < 40; ++i) {
      lines << "{\"prompt\": \"" << word('A', 1 + static_cast<int>(rng() % 12))
            << "\", \"response\": \"" << word('0', 1 + static_cast<int>(rng() % 12)) << "\"}\n";
    }
  }
  std::ofstream(src / "turns.json") << R"({"messages": [{"role": "system", "content": "BEBRIEF"},
      {"role": "user", "content": "HI"}, {"role": "assistant", "content": "123"},
      {"role": "user", "content": "AGAIN"}, {"role": "assistant", "content": "45"}]})";
  std::ofstream(src / "plain.txt") << "all of this text is learned";
  BuildOptions b;
  b.source_dir = src.string();
  b.out_dir = (fresh_dir("sft") / "ds").string();
  b.allow_unknown_license = true;
  build_dataset(b);
  REQUIRE(read_dataset_info(b.out_dir).samples == 42);

  auto o = options(b.out_dir, 4, 0, 1);
  o.seq_len = 127;  // rows of 128: every record fits one
  DatasetLoader loader(o);
  int64_t responses = 0, plain = 0, pieces = 0;
  std::set<uint64_t>
      ended;  // records whose final EOS is a target (the last batch reaches into epoch 2)
  bool epoch_done = false;
  while (!epoch_done) {
    const auto p = loader.next();
    epoch_done = p.after.epoch >= 1;
    for (const auto& piece : p.pieces) {
      ++pieces;
      const int64_t at = piece.row * p.row_len + piece.col;
      const int64_t n = piece.to - piece.from;
      // Samples in path order: chat.jsonl's 40 lines, plain.txt, turns.json.
      const bool is_plain = piece.sample == 40;
      if (!is_plain) CHECK(piece.from == 0);  // never cut: every piece is a whole record
      for (int64_t k = 1; k < n; ++k) {
        const auto pos = static_cast<size_t>(at + k);
        const int32_t t = p.tokens[pos];
        const bool counted = p.kind[pos] == kToken;  // as to_batch() masks the target at pos
        const bool response = t >= '0' && t <= '9';
        const bool last_eos = t == ByteTokenizer::kEos && k == n - 1;
        CAPTURE(k, t);
        if (is_plain) {
          CHECK(counted);
          plain += counted;
        } else {
          CHECK(counted == (response || last_eos));
          responses += counted && response;
          if (counted && last_eos) ended.insert(piece.sample);
        }
      }
    }
  }
  CHECK(pieces >= 42);
  CHECK(ended.size() == 41);  // every record ends in a response
  CHECK(responses > 40);
  CHECK(plain > 20);
}

TEST_CASE("malformed SFT records are refused, naming the file and line") {
  const auto src = fresh_dir("sft_bad_src");
  std::ofstream(src / "a.jsonl") << "{\"prompt\": \"A\", \"response\": \"b\"}\n{\"prompt\": 3}\n";
  BuildOptions b;
  b.source_dir = src.string();
  b.out_dir = (fresh_dir("sft_bad") / "ds").string();
  b.allow_unknown_license = true;
  CHECK_THROWS_WITH(build_dataset(b),
                    Catch::Contains("a.jsonl#L2") && Catch::Contains("'prompt' must be a string"));
  CHECK_FALSE(fs::exists(b.out_dir));
  std::ofstream(src / "a.jsonl", std::ios::trunc)
      << "{\"messages\": [{\"role\": \"user\", \"content\": \"X\"}]}\n";
  CHECK_THROWS_WITH(build_dataset(b), Catch::Contains("no assistant message"));
  std::ofstream(src / "a.jsonl", std::ios::trunc) << "not json\n";
  CHECK_THROWS_WITH(build_dataset(b), Catch::Contains("is not valid JSON"));
}
