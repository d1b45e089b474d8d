// Byte tokenizer and text source, on files the test writes itself.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "data/byte_tokenizer.h"
#include "data/text_source.h"
#include "tests/testing.h"

using namespace moxie;
namespace fs = std::filesystem;

namespace {

// n documents "doc <i> ..." named d100.txt, d101.txt, ...; odd ones in sub/.
fs::path write_docs(const std::string& name, int n, const std::string& ext = ".txt") {
  const auto dir = testing::fresh_dir(name);
  fs::create_directories(dir / "sub");
  for (int i = 0; i < n; ++i) {
    std::ofstream((i % 2 ? dir / "sub" : dir) / ("d" + std::to_string(100 + i) + ext))
        << "doc " << i << " has some text in it, enough for a window. ";
  }
  return dir;
}

DataOptions options_for(const fs::path& dir, int64_t seq_len = 16, double eval_fraction = 0.25) {
  DataOptions o;
  o.path = dir.string();
  o.seq_len = seq_len;
  o.eval_fraction = eval_fraction;
  return o;
}

// The documents of a BOS ... EOS stream, in order.
std::vector<std::string> documents(const std::vector<int32_t>& s) {
  std::vector<std::string> out;
  std::string cur;
  for (auto t : s) {
    if (t == ByteTokenizer::kBos) {
      cur.clear();
    } else if (t == ByteTokenizer::kEos) {
      out.push_back(cur);
    } else {
      cur.push_back(static_cast<char>(t));
    }
  }
  return out;
}

// The number i of a document written by write_docs.
int doc_number(const std::string& text) { return std::stoi(text.substr(4)); }

std::shared_ptr<const std::vector<int32_t>> offsets_stream(size_t n) {
  std::vector<int32_t> s(n);
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<int32_t>(i);  // value = offset
  return std::make_shared<const std::vector<int32_t>>(std::move(s));
}

}  // namespace

TEST_CASE("byte tokenizer round-trips UTF-8 and rejects bad ids") {
  ByteTokenizer tok;
  const std::string text = "naïve café — 東京 🙂";
  auto ids = tok.encode(text);
  CHECK(ids.size() == text.size());  // bytes, not code points
  CHECK(ids[2] == 0xC3);             // first byte of "ï", unsigned
  for (auto id : ids) CHECK((id >= 0 && id < 256));
  CHECK(tok.decode(ids) == text);
  CHECK(tok.decode({ByteTokenizer::kBos, 'h', 'i', ByteTokenizer::kPad, ByteTokenizer::kEos}) ==
        "hi");
  CHECK_THROWS_AS(tok.decode({'a', 300}), std::invalid_argument);
  CHECK_THROWS_WITH(tok.decode({'a', 300}), Catch::Contains("id 300 at position 1"));
  CHECK_THROWS_WITH(tok.decode({-1}), Catch::Contains("id -1"));
  CHECK_THROWS_WITH(tok.decode({ByteTokenizer::kVocabSize}), Catch::Contains("id 263"));
}

TEST_CASE("corpus: deterministic split into disjoint, evenly spread train and eval documents") {
  const auto dir = write_docs("moxie_corpus_split", 12);
  std::ofstream(dir / "ignored.md") << "not a .txt file";
  auto a = load_text_corpus(options_for(dir));
  auto b = load_text_corpus(options_for(dir));
  CHECK(a.train == b.train);
  CHECK(a.eval == b.eval);
  CHECK(a.unigram_entropy_nats == b.unigram_entropy_nats);
  CHECK(a.train_documents == 9);
  CHECK(a.eval_documents == 3);  // round(12 * 0.25)

  const auto train = documents(a.train), eval = documents(a.eval);
  REQUIRE(train.size() == 9);
  REQUIRE(eval.size() == 3);
  for (const auto& d : train) CHECK(d.find("not a .txt") == std::string::npos);
  std::set<int> train_ids, eval_ids;
  for (const auto& d : train) train_ids.insert(doc_number(d));
  for (const auto& d : eval) eval_ids.insert(doc_number(d));
  CHECK(train_ids.size() == 9);
  for (int i : eval_ids) CHECK(!train_ids.count(i));

  // Sorted path order: d100, d102, ..., d110, then sub/d101, ..., sub/d111.
  std::vector<int> order;
  for (int i = 0; i < 12; i += 2) order.push_back(i);
  for (int i = 1; i < 12; i += 2) order.push_back(i);
  // Each half keeps that order, and one eval document falls in each third.
  auto rank = [&](int i) { return std::find(order.begin(), order.end(), i) - order.begin(); };
  for (size_t k = 1; k < train.size(); ++k) {
    CHECK(rank(doc_number(train[k - 1])) < rank(doc_number(train[k])));
  }
  std::set<long> thirds;
  for (int i : eval_ids) thirds.insert(rank(i) / 4);
  CHECK(thirds.size() == 3);
}

TEST_CASE("corpus: at least one eval and one train document whatever the fraction") {
  const auto dir = write_docs("moxie_corpus_few", 3);
  auto small = load_text_corpus(options_for(dir, 8, 0.05));  // round(3 * 0.05) = 0
  CHECK(small.eval_documents == 1);
  CHECK(small.train_documents == 2);
  auto large = load_text_corpus(options_for(dir, 8, 0.95));  // round(3 * 0.95) = 3
  CHECK(large.eval_documents == 2);
  CHECK(large.train_documents == 1);
  CHECK(documents(large.train).size() == 1);
}

TEST_CASE("corpus: unigram entropy of the train tokens equals the hand computation") {
  const auto dir = testing::fresh_dir("moxie_corpus_entropy");
  std::ofstream(dir / "a.txt") << "aab";  // index 0: train
  std::ofstream(dir / "b.txt") << "xy";   // index 1: the one eval document of two
  auto c = load_text_corpus(options_for(dir, 2, 0.5));
  REQUIRE(c.eval_documents == 1);
  CHECK(documents(c.eval) == std::vector<std::string>{"xy"});
  // Train tokens: BOS a a b EOS, so p(a) = 2/5 and p(BOS) = p(b) = p(EOS) = 1/5.
  const double expected = -(0.4 * std::log(0.4) + 3 * 0.2 * std::log(0.2));
  CHECK(c.unigram_entropy_nats == Approx(expected).epsilon(1e-12));
  // And the helper on its own: {a: 1/2, b: 1/4, c: 1/4} is 1.5 bits.
  CHECK(unigram_entropy({'a', 'a', 'b', 'c'}) == Approx(1.5 * std::log(2.0)));
  CHECK(unigram_entropy({'a', 'a'}) == Approx(0.0));
}

TEST_CASE("random windows: slices of the stream, targets shifted by one, seeded") {
  const auto stream = offsets_stream(1000);
  const int64_t B = 4, S = 10;
  RandomWindowSource a(stream, B, S, 5), b(stream, B, S, 5), c(stream, B, S, 6);
  bool any_differs = false;
  for (int step = 0; step < 3; ++step) {
    auto x = a.next();
    auto y = b.next();
    auto z = c.next();
    CHECK(torch::equal(x.tokens, y.tokens));
    CHECK(torch::equal(x.targets, y.targets));
    any_differs |= !torch::equal(x.tokens, z.tokens);
    REQUIRE(x.tokens.sizes() == torch::IntArrayRef({B, S}));
    REQUIRE(x.targets.sizes() == torch::IntArrayRef({B, S}));
    CHECK(x.tokens.dtype() == torch::kLong);
    CHECK(x.targets.dtype() == torch::kLong);
    CHECK(x.loss_mask.dtype() == torch::kFloat);
    CHECK(x.num_tokens() == B * S);
    CHECK(torch::equal(x.tokens.narrow(1, 1, S - 1), x.targets.narrow(1, 0, S - 1)));
    for (int64_t r = 0; r < B; ++r) {
      const int64_t start = x.tokens[r][0].item<int64_t>();  // value = offset
      REQUIRE(start >= 0);
      REQUIRE(start + S + 1 <= static_cast<int64_t>(stream->size()));
      for (int64_t j = 0; j < S; ++j) {
        CHECK(x.tokens[r][j].item<int64_t>() == (*stream)[start + j]);
        CHECK(x.targets[r][j].item<int64_t>() == (*stream)[start + j + 1]);
      }
    }
    CHECK(x.loss_mask.sum().item<double>() == B * S);  // no PAD in this stream
  }
  CHECK(any_differs);
}

TEST_CASE("random windows: the loss mask is zero where the target is PAD") {
  auto stream = std::make_shared<const std::vector<int32_t>>(
      std::vector<int32_t>{'a', ByteTokenizer::kPad, 'b', ByteTokenizer::kPad, 'c'});
  RandomWindowSource src(stream, 8, 4, 1);
  auto x = src.next();
  CHECK(torch::equal(x.loss_mask, x.targets.ne(ByteTokenizer::kPad).to(torch::kFloat)));
  CHECK(x.loss_mask.sum().item<double>() == 8 * 2);  // the only window: targets PAD b PAD c
  CHECK_THROWS_AS(RandomWindowSource(stream, 2, 5, 1), std::invalid_argument);  // 6 > 5 tokens
}

TEST_CASE("eval batches are fixed, evenly spread and do not overlap") {
  const auto stream = offsets_stream(500);
  const int64_t B = 3, S = 9;
  auto a = make_eval_batches(*stream, B, S, 2);
  auto b = make_eval_batches(*stream, B, S, 2);
  REQUIRE(a.size() == 2);
  std::vector<int64_t> starts;
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(torch::equal(a[i].tokens, b[i].tokens));
    CHECK(torch::equal(a[i].targets, b[i].targets));
    CHECK(torch::equal(a[i].tokens.narrow(1, 1, S - 1), a[i].targets.narrow(1, 0, S - 1)));
    for (int64_t r = 0; r < B; ++r) {
      const int64_t start = a[i].tokens[r][0].item<int64_t>();
      CHECK(a[i].targets[r][S - 1].item<int64_t>() == start + S);  // a contiguous slice
      starts.push_back(start);
    }
  }
  std::sort(starts.begin(), starts.end());
  for (size_t k = 1; k < starts.size(); ++k) CHECK(starts[k] - starts[k - 1] >= S + 1);
  CHECK(starts.back() > 500 / 2);  // spread over the stream, not packed at its start
}

TEST_CASE("corpus errors name the path and the fix") {
  const auto missing = fs::temp_directory_path() / "moxie_no_such_dir";
  CHECK_THROWS_WITH(load_text_corpus(options_for(missing)),
                    Catch::Contains(missing.string()) && Catch::Contains("launch/setup.sh") &&
                        Catch::Contains(".data/text"));

  const auto md = write_docs("moxie_corpus_md", 3, ".md");
  CHECK_THROWS_WITH(
      load_text_corpus(options_for(md)),
      Catch::Contains(md.string()) && Catch::Contains("no files with extension .txt"));
  auto two_exts = options_for(md);
  two_exts.extensions = {".txt", ".rst"};
  CHECK_THROWS_WITH(load_text_corpus(two_exts), Catch::Contains(".txt, .rst"));

  const auto small = write_docs("moxie_corpus_small", 4);
  CHECK_THROWS_AS(load_text_corpus(options_for(small, 4000)), std::runtime_error);
  CHECK_THROWS_WITH(load_text_corpus(options_for(small, 4000)),
                    Catch::Contains(small.string()) && Catch::Contains("too small") &&
                        Catch::Contains("data.seq_len"));

  const auto one = write_docs("moxie_corpus_one", 1);
  CHECK_THROWS_WITH(load_text_corpus(options_for(one)),
                    Catch::Contains(one.string()) && Catch::Contains("at least two"));
  const auto single_file = one / "d100.txt";
  CHECK_THROWS_WITH(load_text_corpus(options_for(single_file)),
                    Catch::Contains(single_file.string()) && Catch::Contains("at least two"));
}

TEST_CASE("data-parallel ranks take disjoint slices whose union is the single-process batch") {
  const auto stream = offsets_stream(5000);
  RandomWindowSource whole(stream, 6, 8, 3);
  RandomWindowSource r0(stream, 2, 8, 3, 0, 3), r1(stream, 2, 8, 3, 1, 3),
      r2(stream, 2, 8, 3, 2, 3);
  for (int step = 0; step < 3; ++step) {
    auto all = whole.next().tokens;
    CHECK(torch::equal(torch::cat({r0.next().tokens, r1.next().tokens, r2.next().tokens}), all));
  }
  auto eval_all = make_eval_batches(*stream, 4, 8, 2);
  for (int64_t b = 0; b < 2; ++b) {
    auto a = make_eval_batches(*stream, 2, 8, 2, 0, 2)[b].tokens;
    auto c = make_eval_batches(*stream, 2, 8, 2, 1, 2)[b].tokens;
    CHECK(torch::equal(torch::cat({a, c}), eval_all[b].tokens));
  }
  CHECK_THROWS_AS(RandomWindowSource(stream, 2, 8, 3, 3, 3), std::invalid_argument);
}
