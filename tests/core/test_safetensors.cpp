// safetensors reader and writer: round trips, a file written by the reference
// implementation, and every kind of corruption the reader must refuse.
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/safetensors.h"

using namespace moxie::safetensors;
namespace fs = std::filesystem;

namespace {

std::string temp(const std::string& name) { return (fs::temp_directory_path() / name).string(); }

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// A file with the given JSON header and a buffer of n zero bytes.
std::string crafted(const std::string& name, const std::string& json, size_t n) {
  std::vector<uint8_t> bytes(8);
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<uint8_t>(json.size() >> (8 * i));
  bytes.insert(bytes.end(), json.begin(), json.end());
  bytes.resize(bytes.size() + n, 0);
  const auto path = temp(name);
  write_bytes(path, bytes);
  return path;
}

}  // namespace

TEST_CASE("safetensors round trip: dtypes, a scalar, an empty tensor, metadata") {
  const float f[] = {1.0f, -2.5f, 3.25f, 0.0f, 5.0f, 6.0f};
  const int64_t l[] = {-1, 1LL << 40};
  const double d = 3.141592653589793;
  const uint16_t bf[] = {0x3f80, 0xc000};
  const auto path = temp("moxie_st_roundtrip.safetensors");
  write(path,
        {{"w", DType::F32, {2, 3}, f, sizeof(f)},
         {"ids", DType::I64, {2}, l, sizeof(l)},
         {"pi", DType::F64, {}, &d, sizeof(d)},
         {"empty", DType::F32, {0, 4}, nullptr, 0},
         {"bf", DType::BF16, {2}, bf, sizeof(bf)}},
        {{"format", "pt"}, {"note", "hello"}});
  Reader r(path);
  CHECK(r.tensors().size() == 5);
  CHECK(r.metadata().at("note") == "hello");
  const auto& w = r.at("w");
  CHECK(w.dtype == DType::F32);
  CHECK(w.shape == std::vector<int64_t>{2, 3});
  CHECK(std::memcmp(r.data(w), f, sizeof(f)) == 0);
  CHECK(std::memcmp(r.data(r.at("ids")), l, sizeof(l)) == 0);
  CHECK(r.at("pi").shape.empty());
  CHECK(std::memcmp(r.data(r.at("pi")), &d, sizeof(d)) == 0);
  CHECK(r.at("empty").nbytes == 0);
  CHECK(r.find("missing") == nullptr);
  CHECK_THROWS_WITH(r.at("missing"), Catch::Contains(path) && Catch::Contains("missing"));
  // The header is padded to 8 bytes, as the format recommends.
  auto bytes = read_bytes(path);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  CHECK(n % 8 == 0);
}

TEST_CASE("reads a file written by the reference implementation") {
  // Bytes of: safetensors.numpy.save({'a': np.array([[1.5, -2.0], [0.25, 3.0]], np.float32),
  //   'ids': np.array([7, -1, 123456789012], np.int64)}, metadata={'format': 'np'})
  const std::vector<uint8_t> bytes = {
    152, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97, 116, 97, 95, 95, 34,
    58, 123, 34, 102, 111, 114, 109, 97, 116, 34, 58, 34, 110, 112, 34, 125, 44, 34, 105, 100,
    115, 34, 58, 123, 34, 100, 116, 121, 112, 101, 34, 58, 34, 73, 54, 52, 34, 44, 34, 115, 104,
    97, 112, 101, 34, 58, 91, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115, 101,
    116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 44, 34, 97, 34, 58, 123, 34, 100, 116, 121,
    112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58, 91, 50, 44,
    50, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115, 101, 116, 115, 34, 58, 91, 50, 52,
    44, 52, 48, 93, 125, 125, 32, 32, 32, 32, 32, 32, 32, 7, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255,
    255, 255, 255, 255, 255, 20, 26, 153, 190, 28, 0, 0, 0, 0, 0, 192, 63, 0, 0, 0, 192, 0, 0,
    128, 62, 0, 0, 64, 64
  };
  const auto path = temp("moxie_st_reference.safetensors");
  write_bytes(path, bytes);
  Reader r(path);
  CHECK(r.metadata().at("format") == "np");
  const auto& a = r.at("a");
  float av[4];
  std::memcpy(av, r.data(a), sizeof(av));
  CHECK(a.shape == std::vector<int64_t>{2, 2});
  CHECK(av[0] == 1.5f);
  CHECK(av[1] == -2.0f);
  CHECK(av[2] == 0.25f);
  CHECK(av[3] == 3.0f);
  int64_t ids[3];
  std::memcpy(ids, r.data(r.at("ids")), sizeof(ids));
  CHECK(ids[0] == 7);
  CHECK(ids[1] == -1);
  CHECK(ids[2] == 123456789012LL);
}

TEST_CASE("corrupt files are refused with the file named") {
  const float f[] = {1, 2, 3, 4};
  const auto good = temp("moxie_st_good.safetensors");
  write(good, {{"x", DType::F32, {4}, f, sizeof(f)}});
  const auto bytes = read_bytes(good);

  auto variant = [&](const std::string& name, auto change) {
    auto b = bytes;
    change(b);
    const auto path = temp(name);
    write_bytes(path, b);
    return path;
  };
  const auto truncated = variant("moxie_st_trunc.safetensors", [](auto& b) { b.resize(b.size() - 3); });
  CHECK_THROWS_WITH(Reader(truncated), Catch::Contains(truncated) && Catch::Contains("truncated"));
  const auto tiny = variant("moxie_st_tiny.safetensors", [](auto& b) { b.resize(5); });
  CHECK_THROWS_WITH(Reader(tiny), Catch::Contains("shorter than the 8-byte"));
  const auto huge = variant("moxie_st_huge.safetensors", [](auto& b) { b[5] = 1; });
  CHECK_THROWS_WITH(Reader(huge), Catch::Contains("exceeds 100 MB"));
  const auto past = variant("moxie_st_past.safetensors", [](auto& b) { b[0] += 64; });
  CHECK_THROWS_WITH(Reader(past), Catch::Contains("runs past the end"));
  const auto garbage = variant("moxie_st_json.safetensors", [](auto& b) { b[9] = '#'; });
  CHECK_THROWS_WITH(Reader(garbage), Catch::Contains("not valid JSON"));
  const auto trailing = variant("moxie_st_trail.safetensors", [](auto& b) { b.push_back(0); });
  CHECK_THROWS_WITH(Reader(trailing), Catch::Contains("belong to no tensor"));
  CHECK_THROWS_WITH(Reader(temp("moxie_st_absent.safetensors")), Catch::Contains("cannot open"));

  auto p = crafted("moxie_st_dtype.safetensors", R"({"x":{"dtype":"F7","shape":[1],"data_offsets":[0,4]}})", 4);
  CHECK_THROWS_WITH(Reader(p), Catch::Contains("unsupported dtype 'F7'"));
  p = crafted("moxie_st_size.safetensors", R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 4);
  CHECK_THROWS_WITH(Reader(p), Catch::Contains("need 8"));
  p = crafted("moxie_st_overlap.safetensors",
              R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"y":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})", 6);
  CHECK_THROWS_WITH(Reader(p), Catch::Contains("overlaps"));
  p = crafted("moxie_st_hole.safetensors", R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8);
  CHECK_THROWS_WITH(Reader(p), Catch::Contains("no holes"));
  p = crafted("moxie_st_fields.safetensors", R"({"x":{"dtype":"F32","shape":[1]}})", 4);
  CHECK_THROWS_WITH(Reader(p), Catch::Contains("needs dtype"));
  p = crafted("moxie_st_neg.safetensors", R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4);
  CHECK_THROWS_WITH(Reader(p), Catch::Contains("negative dimension"));
  p = crafted("moxie_st_order.safetensors", R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", 4);
  CHECK_THROWS_WITH(Reader(p), Catch::Contains("begin 4 > end 0"));
}

TEST_CASE("the writer refuses inconsistent input and never leaves a partial file") {
  const float f[] = {1, 2};
  const auto path = temp("moxie_st_writer.safetensors");
  write(path, {{"x", DType::F32, {2}, f, sizeof(f)}});
  CHECK_THROWS_WITH(write(path, {{"x", DType::F32, {3}, f, sizeof(f)}}), Catch::Contains("need 12"));
  CHECK_THROWS_WITH(write(path, {{"x", DType::F32, {2}, f, 8}, {"x", DType::F32, {2}, f, 8}}),
                    Catch::Contains("given twice"));
  CHECK(Reader(path).at("x").shape == std::vector<int64_t>{2});  // the earlier file is intact
  CHECK_THROWS_WITH(write("/nonexistent-dir/x.safetensors", {{"x", DType::F32, {2}, f, 8}}),
                    Catch::Contains("/nonexistent-dir/x.safetensors"));
}
