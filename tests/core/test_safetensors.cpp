// safetensors reader and writer: round trips, a file written by the reference
// implementation (Python's safetensors), every kind of corruption the reader
// must refuse, and the writer's checks and atomic replace.
#include <sys/stat.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/checkpoint/safetensors.h"
#include "tests/testing.h"

using namespace moxie::safetensors;
namespace fs = std::filesystem;

namespace {

using moxie::testing::TempDir;

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// A file: the 8-byte length `len`, then `header`, then n zero bytes.
std::vector<uint8_t> file_bytes(uint64_t len, const std::string& header, size_t n) {
  // Sized once and filled (GCC 12 warns falsely on insert-after-resize here).
  std::vector<uint8_t> b(8 + header.size() + n, 0);
  for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(len >> (8 * i));
  std::copy(header.begin(), header.end(), b.begin() + 8);
  return b;
}
std::vector<uint8_t> file_bytes(const std::string& header, size_t n) {
  return file_bytes(header.size(), header, n);
}

// One tensor "x" of `dtype` and `shape` at data_offsets [begin, end].
std::string entry(const std::string& shape, int begin, int end, const std::string& dtype = "F32") {
  return R"({"x":{"dtype":")" + dtype + R"(","shape":)" + shape + R"(,"data_offsets":[)" +
         std::to_string(begin) + "," + std::to_string(end) + "]}}";
}

}  // namespace

TEST_CASE("dtype names and sizes follow the format") {
  CHECK(std::string(dtype_name(DType::BF16)) == "BF16");
  CHECK(std::string(dtype_name(DType::BOOL)) == "BOOL");
  CHECK(dtype_size(DType::F64) == 8);
  CHECK(dtype_size(DType::F16) == 2);
  CHECK(dtype_size(DType::I32) == 4);
  CHECK(dtype_size(DType::U8) == 1);
}

TEST_CASE("safetensors round trip: every dtype, a scalar, empty tensors, metadata") {
  TempDir dir;
  const auto path = dir.file("roundtrip.safetensors");
  const std::vector<std::pair<DType, std::vector<int64_t>>> specs = {
      {DType::F32, {2, 3}}, {DType::I64, {2}},    {DType::F64, {}},     {DType::F32, {0, 4}},
      {DType::BF16, {3}},   {DType::F16, {1, 1}}, {DType::I32, {2, 1}}, {DType::I16, {5}},
      {DType::I8, {0}},     {DType::U8, {7}},     {DType::BOOL, {2, 2}}};
  std::vector<std::vector<uint8_t>> payloads;
  std::vector<TensorView> views;
  for (size_t i = 0; i < specs.size(); ++i) {
    uint64_t n = dtype_size(specs[i].first);
    for (auto d : specs[i].second) n *= d;
    payloads.emplace_back(n);
    for (uint64_t j = 0; j < n; ++j) payloads.back()[j] = static_cast<uint8_t>(31 * i + 7 * j + 1);
    // The names run backwards so that the writer has to sort them.
    views.push_back({"t" + std::to_string(specs.size() - i), specs[i].first, specs[i].second,
                     n ? payloads.back().data() : nullptr, n});
  }
  const std::map<std::string, std::string> metadata = {{"format", "pt"},
                                                       {"note", "héllo, \"quoted\""}};
  write(path, views, metadata);
  CHECK_FALSE(fs::exists(path + ".tmp"));

  Reader read(path);
  const Reader r = std::move(read);  // the map moves with the Reader
  CHECK(r.path() == path);
  CHECK(r.metadata() == metadata);
  REQUIRE(r.tensors().size() == views.size());
  for (size_t i = 0; i < views.size(); ++i) {
    INFO(views[i].name);
    const auto& t = r.at(views[i].name);
    CHECK(r.find(views[i].name) == &t);
    CHECK(t.dtype == views[i].dtype);
    CHECK(t.shape == views[i].shape);
    REQUIRE(t.nbytes == views[i].nbytes);
    CHECK(std::memcmp(r.data(t), payloads[i].data(), t.nbytes) == 0);
  }
  CHECK(r.at("t9").shape.empty());  // the F64 scalar
  for (size_t i = 1; i < r.tensors().size(); ++i) {
    CHECK(r.tensors()[i - 1].offset + r.tensors()[i - 1].nbytes ==
          r.tensors()[i].offset);                          // file order
    CHECK(r.tensors()[i - 1].name < r.tensors()[i].name);  // written sorted by name
  }
  CHECK(r.find("missing") == nullptr);
  CHECK_THROWS_WITH(r.at("missing"), Catch::Contains(path) && Catch::Contains("'missing'"));
  const auto b = read_bytes(path);
  uint64_t header_len = 0;
  std::memcpy(&header_len, b.data(), 8);
  CHECK(header_len % 8 == 0);
  CHECK(b[8 + header_len - 1] != 0);  // padded with spaces, not zeros
}

TEST_CASE("reads a file written by the reference implementation") {
  // Python, safetensors 0.8.0, numpy 2.4:
  //   import numpy as np, safetensors.numpy as s
  //   b = s.save({"a": np.array([[1.5, -2.0], [0.25, 3.0]], np.float32),
  //               "ids": np.array([7, -1, 123456789012], np.int64),
  //               "half": np.array(-0.5, np.float16),
  //               "mask": np.array([True, False, True]),
  //               "none": np.zeros((0, 3), np.uint8),
  //               "i8": np.array([-128, 127], np.int8)}, metadata={"format": "np"})
  // The bytes are b[:8], b[8:384] (ASCII, shown as text) and b[384:].
  const std::vector<uint8_t> length = {0x78, 0x01, 0, 0, 0, 0, 0, 0};
  const std::string header = R"({"__metadata__":{"format":"np"},)"
                             R"("ids":{"dtype":"I64","shape":[3],"data_offsets":[0,24]},)"
                             R"("a":{"dtype":"F32","shape":[2,2],"data_offsets":[24,40]},)"
                             R"("half":{"dtype":"F16","shape":[],"data_offsets":[40,42]},)"
                             R"("i8":{"dtype":"I8","shape":[2],"data_offsets":[42,44]},)"
                             R"("none":{"dtype":"U8","shape":[0,3],"data_offsets":[44,44]},)"
                             R"("mask":{"dtype":"BOOL","shape":[3],"data_offsets":[44,47]}} )";
  const std::vector<uint8_t> buffer = {0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff,
                                       0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x14, 0x1a, 0x99, 0xbe,
                                       0x1c, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00,
                                       0x00, 0xc0, 0x00, 0x00, 0x80, 0x3e, 0x00, 0x00, 0x40, 0x40,
                                       0x00, 0xb8, 0x80, 0x7f, 0x01, 0x00, 0x01};
  REQUIRE(header.size() == 376);
  std::vector<uint8_t> bytes = length;
  bytes.insert(bytes.end(), header.begin(), header.end());
  bytes.insert(bytes.end(), buffer.begin(), buffer.end());
  TempDir dir;
  const auto path = dir.file("reference.safetensors");
  write_bytes(path, bytes);

  const Reader r(path);
  CHECK(r.metadata() == std::map<std::string, std::string>{{"format", "np"}});
  CHECK(r.tensors().size() == 6);
  const auto& a = r.at("a");
  CHECK(a.dtype == DType::F32);
  CHECK(a.shape == std::vector<int64_t>{2, 2});
  float av[4];
  std::memcpy(av, r.data(a), sizeof(av));
  CHECK(std::vector<float>(av, av + 4) == std::vector<float>{1.5f, -2.0f, 0.25f, 3.0f});
  int64_t ids[3];
  std::memcpy(ids, r.data(r.at("ids")), sizeof(ids));
  CHECK(std::vector<int64_t>(ids, ids + 3) == std::vector<int64_t>{7, -1, 123456789012LL});
  const auto& half = r.at("half");
  CHECK(half.shape.empty());
  uint16_t half_bits;
  std::memcpy(&half_bits, r.data(half), 2);
  CHECK(half_bits == 0xb800);  // IEEE binary16 -0.5: sign 1, exponent 14, mantissa 0
  const auto& i8 = r.at("i8");
  CHECK(static_cast<int8_t>(r.data(i8)[0]) == -128);
  CHECK(static_cast<int8_t>(r.data(i8)[1]) == 127);
  CHECK(r.at("none").shape == std::vector<int64_t>{0, 3});
  CHECK(r.at("none").nbytes == 0);
  const auto& mask = r.at("mask");
  CHECK(mask.dtype == DType::BOOL);
  CHECK(std::vector<uint8_t>(r.data(mask), r.data(mask) + 3) == std::vector<uint8_t>{1, 0, 1});
}

TEST_CASE("corrupt files are refused, naming the file and what is wrong") {
  TempDir dir;
  const float f[] = {1, 2, 3, 4};
  const auto good_path = dir.file("good.safetensors");
  write(good_path, {{"x", DType::F32, {4}, f, sizeof(f)}});
  const auto good = read_bytes(good_path);
  const std::string good_header(good.begin() + 8, good.end() - 16);
  auto changed = [&](auto change) {
    auto b = good;
    change(b);
    return b;
  };
  const std::string f32 = R"("dtype":"F32","shape":[1])";

  struct Case {
    std::string name;
    std::vector<uint8_t> bytes;
    std::string expected;  // in the message, besides the file's path
  };
  const std::vector<Case> cases = {
      {"empty", {}, "shorter than the 8-byte header length"},
      {"tiny", changed([](auto& b) { b.resize(5); }), "shorter than the 8-byte header length"},
      {"huge", file_bytes(200'000'000, good_header, 16), "header length 200000000 exceeds 100 MB"},
      {"past", file_bytes(good_header.size() + 17, good_header, 16), "runs past the end"},
      {"json", file_bytes(R"({"x":)", 0), "is not valid JSON"},
      {"array", file_bytes("[1,2]", 0), "header is array, not a JSON object"},
      {"entry", file_bytes(R"({"x":3})", 0), "tensor 'x' is not an object"},
      {"no dtype", file_bytes(R"({"x":{"shape":[1],"data_offsets":[0,4]}})", 4),
       "tensor 'x' has no dtype"},
      {"no shape", file_bytes(R"({"x":{"dtype":"F32","data_offsets":[0,4]}})", 4),
       "tensor 'x' has no shape"},
      {"no offsets", file_bytes("{\"x\":{" + f32 + "}}", 4), "tensor 'x' has no data_offsets"},
      {"dtype number", file_bytes(R"({"x":{"dtype":4,"shape":[1],"data_offsets":[0,4]}})", 4),
       "dtype is 4, not a string"},
      {"shape type", file_bytes(entry("\"1\"", 0, 4), 4), "shape is \"1\", not an array"},
      {"shape float", file_bytes(entry("[1.5]", 0, 4), 4),
       "dimension 1.5 is not a non-negative integer"},
      {"offsets size", file_bytes("{\"x\":{" + f32 + R"(,"data_offsets":[4]}})", 4),
       "data_offsets is [4], not [begin, end]"},
      {"offset type", file_bytes("{\"x\":{" + f32 + R"(,"data_offsets":[0,"4"]}})", 4),
       "data offset \"4\" is not"},
      {"negative offset", file_bytes(entry("[1]", -4, 0), 4),
       "data offset -4 is not a non-negative integer"},
      {"dtype", file_bytes(entry("[1]", 0, 4, "F7"), 4), "unsupported dtype 'F7'"},
      {"negative dim", file_bytes(entry("[-1]", 0, 4), 4),
       "dimension -1 is not a non-negative integer"},
      {"overflow", file_bytes(entry("[4294967296,4294967296]", 0, 4), 4), "overflows"},
      {"begin > end", file_bytes(entry("[1]", 4, 0), 4), "data_offsets [4, 0]: begin is after end"},
      {"end", file_bytes(entry("[2]", 0, 8), 4), "tensor 'x' ends at byte"},
      {"truncated", changed([](auto& b) { b.resize(b.size() - 3); }), "truncated"},
      {"size", file_bytes(entry("[2]", 0, 4), 4), "has 4 bytes at byte"},
      {"overlap",
       file_bytes("{\"x\":{" + f32 + R"(,"data_offsets":[0,4]},"y":{)" + f32 +
                      R"(,"data_offsets":[2,6]}})",
                  6),
       "tensor 'y' at bytes"},
      {"hole", file_bytes(entry("[1]", 4, 8), 8),
       "belong to no tensor (the format allows no holes)"},
      {"trailing", changed([](auto& b) { b.push_back(0); }), "at the end belong to no tensor"},
      {"metadata", file_bytes(R"({"__metadata__":[1]})", 0), "__metadata__ is [1], not an object"},
      {"metadata value", file_bytes(R"({"__metadata__":{"n":1}})", 0),
       "__metadata__ value of 'n' is 1"},
      {"nesting", file_bytes(R"({"x":{"dtype":"F32","shape":[[[[[[[[[[1]]]]]]]]]]}})", 0),
       "header nests deeper than 8 levels"},
      {"long name",
       file_bytes(
           "{\"" + std::string(5000, 'n') + R"(":{"dtype":"F7","shape":[],"data_offsets":[0,0]}})",
           0),
       "tensor 'nnnnnnnnnn"},
  };
  for (const auto& [name, bytes, expected] : cases) {
    INFO(name);
    const auto path = dir.file(name + ".safetensors");
    write_bytes(path, bytes);
    CHECK_THROWS_AS(Reader(path), Error);
    CHECK_THROWS_WITH(Reader(path), Catch::Contains(path) && Catch::Contains(expected));
  }
  // A long name is quoted cut short, never whole.
  try {
    Reader r(dir.file("long name.safetensors"));
  } catch (const Error& e) {
    CHECK(std::string(e.what()).size() < 400);
  }
  const auto absent = dir.file("absent.safetensors");
  CHECK_THROWS_WITH(Reader(absent),
                    Catch::Contains(absent) && Catch::Contains("No such file or directory"));
  CHECK_THROWS_WITH(Reader(dir.file("")), Catch::Contains("not a regular file"));
  // A FIFO is refused by name at once, not waited on for a writer.
  const auto fifo = dir.file("fifo.safetensors");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK_THROWS_WITH(Reader(fifo), Catch::Contains(fifo) && Catch::Contains("a FIFO"));

  // Zero-element tensors are valid, even sharing their offset with another tensor.
  const auto zero = dir.file("zero.safetensors");
  write_bytes(
      zero,
      file_bytes(
          R"({"e":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"x":{)" + f32 +
              R"(,"data_offsets":[0,4]},"z":{"dtype":"I8","shape":[2,0],"data_offsets":[4,4]}})",
          4));
  const Reader r(zero);
  CHECK(r.tensors().size() == 3);
  CHECK(r.tensors().front().name == "e");
}

TEST_CASE("the writer refuses inconsistent input and never leaves a partial file") {
  TempDir dir;
  const float f[] = {1, 2};
  const auto path = dir.file("writer.safetensors");
  write(path, {{"x", DType::F32, {2}, f, sizeof(f)}});
  CHECK_THROWS_WITH(
      write(path, {{"x", DType::F32, {3}, f, sizeof(f)}}),
      Catch::Contains(path) &&
          Catch::Contains("tensor 'x' has 8 bytes but dtype F32 and its shape need 12"));
  CHECK_THROWS_WITH(write(path, {{"x", DType::F32, {2}, f, 8},
                                 {"y", DType::F32, {1}, f, 4},
                                 {"x", DType::F32, {2}, f, 8}}),
                    Catch::Contains(path) && Catch::Contains("tensor 'x' is given twice"));
  CHECK_THROWS_WITH(write(path, {{"__metadata__", DType::F32, {2}, f, 8}}),
                    Catch::Contains("cannot name a tensor"));
  CHECK_THROWS_WITH(write(path, {{"x", DType::F32, {2}, nullptr, 8}}),
                    Catch::Contains("no data pointer"));
  CHECK_THROWS_WITH(write(path, {{"x", DType::F32, {-2}, f, 8}}),
                    Catch::Contains("negative dimension -2"));
  CHECK_THROWS_WITH(write(path, {{"bad\xff", DType::F32, {2}, f, 8}}),
                    Catch::Contains("not valid UTF-8"));
  CHECK(Reader(path).at("x").shape == std::vector<int64_t>{2});  // the earlier file is intact
  CHECK_FALSE(fs::exists(path + ".tmp"));

  const std::string nowhere = dir.file("no-such-dir/x.safetensors");
  CHECK_THROWS_WITH(write(nowhere, {{"x", DType::F32, {2}, f, 8}}),
                    Catch::Contains(nowhere) && Catch::Contains("No such file or directory"));
  // A directory squatting on the temporary name: the write fails, the old file stays.
  fs::create_directory(path + ".tmp");
  CHECK_THROWS_WITH(write(path, {{"y", DType::F32, {2}, f, 8}}), Catch::Contains(path + ".tmp"));
  CHECK(Reader(path).find("x") != nullptr);
  fs::remove(path + ".tmp");

  // A link planted at the target is replaced, not written through.
  const auto victim = dir.file("victim");
  moxie::testing::write_file(victim, "keep");
  const auto linked = dir.file("linked.safetensors");
  fs::create_symlink(victim, linked);
  write(linked, {{"x", DType::F32, {2}, f, 8}});
  CHECK(moxie::testing::read_file(victim) == "keep");
  CHECK_FALSE(fs::is_symlink(linked));

  write(path, {{"y", DType::F32, {1}, f + 1, 4}});  // replaces the file
  const Reader r(path);
  CHECK(r.find("x") == nullptr);
  float y;
  std::memcpy(&y, r.data(r.at("y")), 4);
  CHECK(y == 2.0f);
}
