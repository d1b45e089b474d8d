// Byte tokenizer and text source, on files the test writes itself.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "data/byte_tokenizer.h"
#include "data/text_source.h"

using namespace moxie;
namespace fs = std::filesystem;

namespace {

fs::path write_docs(const std::string& name, int n, const std::string& ext = ".txt") {
  const auto dir = fs::temp_directory_path() / name;
  fs::remove_all(dir);
  fs::create_directories(dir / "sub");
  for (int i = 0; i < n; ++i) {
    std::ofstream((i % 2 ? dir / "sub" : dir) / ("d" + std::to_string(100 + i) + ext))
        << "document number " << i << " has some text in it, enough for a window. ";
  }
  return dir;
}

DataOptions options_for(const fs::path& dir, int64_t seq_len = 16) {
  DataOptions o;
  o.path = dir.string();
  o.seq_len = seq_len;
  o.eval_fraction = 0.25;
  return o;
}

}  // namespace

TEST_CASE("byte tokenizer round-trips UTF-8 and rejects bad ids") {
  ByteTokenizer tok;
  const std::string text = "naïve café — 東京";
  auto ids = tok.encode(text);
  CHECK(ids.size() == text.size());
  CHECK(tok.decode(ids) == text);
  CHECK(tok.decode({ByteTokenizer::kBos, 'h', 'i', ByteTokenizer::kEos}) == "hi");
  CHECK_THROWS_WITH(tok.decode({'a', 300}), Catch::Contains("id 300 at position 1"));
}

TEST_CASE("corpus: deterministic split into disjoint train and eval documents") {
  const auto dir = write_docs("moxie_corpus_split", 12);
  std::ofstream(dir / "ignored.md") << "not a .txt file";
  auto a = load_text_corpus(options_for(dir));
  auto b = load_text_corpus(options_for(dir));
  CHECK(a.train == b.train);
  CHECK(a.eval == b.eval);
  CHECK(a.train_documents + a.eval_documents == 12);
  CHECK(a.eval_documents == 3);
  // Documents are delimited and none is in both halves.
  auto docs = [](const std::vector<int32_t>& s) {
    std::set<std::string> out;
    std::string cur;
    for (auto t : s) {
      if (t == ByteTokenizer::kBos) cur.clear();
      else if (t == ByteTokenizer::kEos) out.insert(cur);
      else cur.push_back(static_cast<char>(t));
    }
    return out;
  };
  auto train = docs(a.train), eval = docs(a.eval);
  CHECK(train.size() == 9);
  for (const auto& d : eval) CHECK(!train.count(d));
}

TEST_CASE("unigram entropy equals the hand computation") {
  // Distribution {a: 1/2, b: 1/4, c: 1/4}: H = 1.5 bits = 1.5 ln 2 nats.
  CHECK(unigram_entropy({'a', 'a', 'b', 'c'}) == Approx(1.5 * std::log(2.0)));
  CHECK(unigram_entropy({'a', 'a'}) == Approx(0.0));
}

TEST_CASE("random windows: targets are the next tokens, same seed same batches") {
  auto stream = std::make_shared<const std::vector<int32_t>>([] {
    std::vector<int32_t> s(1000);
    for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<int32_t>((i * 7) % 256);
    return s;
  }());
  RandomWindowSource a(stream, 4, 10, 5), b(stream, 4, 10, 5), c(stream, 4, 10, 6);
  for (int step = 0; step < 3; ++step) {
    auto x = a.next();
    auto y = b.next();
    CHECK(torch::equal(x.tokens, y.tokens));
    CHECK(!torch::equal(x.tokens, c.next().tokens));
    CHECK(x.tokens.sizes() == torch::IntArrayRef({4, 10}));
    for (int64_t r = 0; r < 4; ++r) {
      // Find the window in the stream and check both rows against it.
      const int64_t first = x.tokens[r][0].item<int64_t>();
      const int64_t second = x.tokens[r][1].item<int64_t>();
      bool found = false;
      for (size_t s = 0; s + 11 <= stream->size() && !found; ++s) {
        if ((*stream)[s] != first || (*stream)[s + 1] != second) continue;
        bool all = true;
        for (int64_t j = 0; j < 10; ++j) {
          all &= x.tokens[r][j].item<int64_t>() == (*stream)[s + j];
          all &= x.targets[r][j].item<int64_t>() == (*stream)[s + j + 1];
        }
        found = all;
      }
      CHECK(found);
    }
    CHECK(x.loss_mask.sum().item<double>() == 40);
  }
}

TEST_CASE("eval batches are fixed and do not overlap") {
  std::vector<int32_t> stream(500);
  for (size_t i = 0; i < stream.size(); ++i) stream[i] = static_cast<int32_t>(i);  // value = offset
  auto a = make_eval_batches(stream, 3, 9, 2);
  auto b = make_eval_batches(stream, 3, 9, 2);
  REQUIRE(a.size() == 2);
  std::set<int64_t> starts;
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(torch::equal(a[i].tokens, b[i].tokens));
    for (int64_t r = 0; r < 3; ++r) starts.insert(a[i].tokens[r][0].item<int64_t>());
  }
  CHECK(starts.size() == 6);  // windows of 10 spread over 500 tokens: distinct starts
}

TEST_CASE("corpus errors name the path and the fix") {
  auto o = options_for(fs::temp_directory_path() / "moxie_no_such_dir");
  CHECK_THROWS_WITH(load_text_corpus(o), Catch::Contains("moxie_no_such_dir") &&
                                             Catch::Contains("launch/setup.sh"));
  const auto md = write_docs("moxie_corpus_md", 3, ".md");
  CHECK_THROWS_WITH(load_text_corpus(options_for(md)), Catch::Contains("no files with extension .txt"));
  const auto small = write_docs("moxie_corpus_small", 4);
  CHECK_THROWS_WITH(load_text_corpus(options_for(small, 4000)), Catch::Contains("too small"));
  const auto one = write_docs("moxie_corpus_one", 1);
  CHECK_THROWS_WITH(load_text_corpus(options_for(one)), Catch::Contains("at least two"));
}

TEST_CASE("data-parallel ranks take disjoint slices whose union is the single-process batch") {
  auto stream = std::make_shared<const std::vector<int32_t>>([] {
    std::vector<int32_t> s(5000);
    for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<int32_t>(i);  // value = offset
    return s;
  }());
  RandomWindowSource whole(stream, 6, 8, 3);
  RandomWindowSource r0(stream, 2, 8, 3, 0, 3), r1(stream, 2, 8, 3, 1, 3), r2(stream, 2, 8, 3, 2, 3);
  for (int step = 0; step < 3; ++step) {
    auto all = whole.next().tokens;
    CHECK(torch::equal(torch::cat({r0.next().tokens, r1.next().tokens, r2.next().tokens}), all));
  }
  std::vector<int32_t> flat(stream->begin(), stream->end());
  auto eval_all = make_eval_batches(flat, 4, 8, 2);
  for (int64_t b = 0; b < 2; ++b) {
    auto a = make_eval_batches(flat, 2, 8, 2, 0, 2)[b].tokens;
    auto c = make_eval_batches(flat, 2, 8, 2, 1, 2)[b].tokens;
    CHECK(torch::equal(torch::cat({a, c}), eval_all[b].tokens));
  }
}
