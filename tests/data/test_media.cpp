// Media decoding (data/media.h) on files the test makes with known content:
// PNGs written with libpng in every colour type the decoder converts, JPEGs
// written with libjpeg, WAVs laid out by hand after the RIFF/WAVE spec. Each
// decoded value is checked against the pixels or samples written (by the
// formats' own rules: grey expands to equal channels, alpha composites over
// white, 16 bits keep the high byte), resizing against hand-computed box
// means, and damaged files against one clear DatasetError naming the file.
#include <png.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

// After <cstdio>: jpeglib.h uses size_t and FILE without declaring them.
#include <jpeglib.h>

#include "data/dataset.h"
#include "data/media.h"

using namespace moxie;
using Catch::Contains;

namespace {

// --- writers --------------------------------------------------------------------

void png_append(png_structp png, png_bytep data, png_size_t n) {
  static_cast<std::string*>(png_get_io_ptr(png))->append(reinterpret_cast<const char*>(data), n);
}
void png_flush(png_structp) {}
[[noreturn]] void png_fail(png_structp, png_const_charp msg) { throw std::runtime_error(msg); }

// A PNG of `rows` (each row's bytes as the colour type and depth lay them out).
// palette/trns: for PNG_COLOR_TYPE_PALETTE.
std::string write_png(uint32_t width, uint32_t height, int color_type, int bit_depth,
                      const std::vector<std::string>& rows, bool interlaced = false,
                      const std::vector<png_color>& palette = {},
                      const std::vector<png_byte>& trns = {}) {
  std::string out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, png_fail, nullptr);
  png_infop info = png_create_info_struct(png);
  png_set_write_fn(png, &out, png_append, png_flush);
  png_set_IHDR(png, info, width, height, bit_depth, color_type,
               interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (!palette.empty()) png_set_PLTE(png, info, palette.data(), static_cast<int>(palette.size()));
  if (!trns.empty()) png_set_tRNS(png, info, trns.data(), static_cast<int>(trns.size()), nullptr);
  png_write_info(png, info);
  std::vector<png_bytep> pointers;
  std::vector<std::string> copy = rows;
  for (auto& r : copy) pointers.push_back(reinterpret_cast<png_bytep>(r.data()));
  png_write_image(png, pointers.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

std::string bytes(std::initializer_list<int> values) {
  std::string s;
  for (int v : values) s.push_back(static_cast<char>(v));
  return s;
}

// A JPEG of 8-bit RGB (components 3) or grey (1) pixels, at quality 100.
std::string write_jpeg(uint32_t width, uint32_t height, int components,
                       const std::vector<uint8_t>& pixels) {
  jpeg_compress_struct cinfo{};
  jpeg_error_mgr err{};
  cinfo.err = jpeg_std_error(&err);
  jpeg_create_compress(&cinfo);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&cinfo, &buffer, &size);
  cinfo.image_width = width;
  cinfo.image_height = height;
  cinfo.input_components = components;
  cinfo.in_color_space = components == 3 ? JCS_RGB : JCS_GRAYSCALE;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, 100, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < height) {
    auto* row = const_cast<JSAMPLE*>(pixels.data() +
                                     static_cast<size_t>(cinfo.next_scanline) * width * components);
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  std::string out(reinterpret_cast<const char*>(buffer), size);
  std::free(buffer);
  return out;
}

void put_le(std::string& s, uint32_t v, int n) {
  for (int i = 0; i < n; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// A canonical 44-byte-header PCM WAV; `data` holds the interleaved samples as
// stored (little-endian).
std::string wav(uint32_t rate, uint16_t channels, uint16_t bits, const std::string& data) {
  std::string s = "RIFF";
  put_le(s, static_cast<uint32_t>(36 + data.size()), 4);
  s += "WAVEfmt ";
  put_le(s, 16, 4);
  put_le(s, 1, 2);  // PCM
  put_le(s, channels, 2);
  put_le(s, rate, 4);
  put_le(s, rate * channels * bits / 8, 4);  // bytes per second
  put_le(s, channels * bits / 8, 2);         // bytes per frame
  put_le(s, bits, 2);
  s += "data";
  put_le(s, static_cast<uint32_t>(data.size()), 4);
  return s + data;
}

std::string s16(const std::vector<int16_t>& samples) {
  std::string s;
  for (int16_t v : samples) put_le(s, static_cast<uint16_t>(v), 2);
  return s;
}

std::vector<int> rgb(const Image& im, uint32_t x, uint32_t y) {
  const size_t at = (static_cast<size_t>(y) * im.width + x) * 3;
  return {im.pixels[at], im.pixels[at + 1], im.pixels[at + 2]};
}

}  // namespace

// --- PNG ------------------------------------------------------------------------

TEST_CASE("PNG: 8-bit RGB decodes to the pixels written, interlaced or not") {
  // 3 x 2, every channel value distinct.
  const std::vector<std::string> rows = {bytes({0, 1, 2, 50, 100, 150, 255, 254, 253}),
                                         bytes({10, 20, 30, 40, 50, 60, 70, 80, 90})};
  for (bool interlaced : {false, true}) {
    INFO("interlaced " << interlaced);
    const auto im = decode_png(write_png(3, 2, PNG_COLOR_TYPE_RGB, 8, rows, interlaced), "a.png");
    CHECK(im.width == 3);
    CHECK(im.height == 2);
    CHECK(im.channels == 3);
    CHECK(im.pixels == std::vector<uint8_t>{0, 1, 2, 50, 100, 150, 255, 254, 253, 10, 20, 30, 40,
                                            50, 60, 70, 80, 90});
  }
}

TEST_CASE("PNG: grey, palette, alpha and 16-bit images become 8-bit RGB") {
  SECTION("8-bit grey: three equal channels") {
    const auto im = decode_png(write_png(2, 1, PNG_COLOR_TYPE_GRAY, 8, {bytes({7, 200})}), "g.png");
    CHECK(im.pixels == std::vector<uint8_t>{7, 7, 7, 200, 200, 200});
  }
  SECTION("1-bit grey: 0 is black, 1 is white") {
    // Bits 1,0,1,1 from the high end of the byte; the rest is padding.
    const auto im =
        decode_png(write_png(4, 1, PNG_COLOR_TYPE_GRAY, 1, {bytes({0xB0})}), "bits.png");
    CHECK(im.pixels == std::vector<uint8_t>{255, 255, 255, 0, 0, 0, 255, 255, 255, 255, 255, 255});
  }
  SECTION("palette, one entry transparent") {
    const std::vector<png_color> palette = {{10, 20, 30}, {200, 100, 0}};
    const auto im = decode_png(
        write_png(3, 1, PNG_COLOR_TYPE_PALETTE, 8, {bytes({1, 0, 1})}, false, palette, {0, 255}),
        "p.png");
    // Entry 1 is opaque; entry 0 fully transparent, so white.
    CHECK(im.pixels == std::vector<uint8_t>{200, 100, 0, 255, 255, 255, 200, 100, 0});
  }
  SECTION("RGBA: alpha composited over white") {
    const auto im = decode_png(write_png(3, 1, PNG_COLOR_TYPE_RGB_ALPHA, 8,
                                         {bytes({40, 80, 120, 255, 40, 80, 120, 0, 0, 0, 0, 128})}),
                               "rgba.png");
    CHECK(rgb(im, 0, 0) == std::vector<int>{40, 80, 120});    // opaque: as written
    CHECK(rgb(im, 1, 0) == std::vector<int>{255, 255, 255});  // transparent: the white background
    // Black at alpha 128/255 over white: 255 * (1 - 128/255) = 127, within rounding.
    for (int c : rgb(im, 2, 0)) CHECK(std::abs(c - 127) <= 1);
  }
  SECTION("grey with alpha") {
    const auto im = decode_png(
        write_png(2, 1, PNG_COLOR_TYPE_GRAY_ALPHA, 8, {bytes({90, 255, 90, 0})}), "ga.png");
    CHECK(im.pixels == std::vector<uint8_t>{90, 90, 90, 255, 255, 255});
  }
  SECTION("16-bit RGB keeps the high byte") {
    // Values b * 257 (0xbbbb), which any reduction to 8 bits maps to b.
    const auto im = decode_png(
        write_png(
            2, 1, PNG_COLOR_TYPE_RGB, 16,
            {bytes({0x12, 0x12, 0xAB, 0xAB, 0xFF, 0xFF, 0x00, 0x00, 0x80, 0x80, 0x01, 0x01})}),
        "deep.png");
    CHECK(im.pixels == std::vector<uint8_t>{0x12, 0xAB, 0xFF, 0x00, 0x80, 0x01});
  }
}

TEST_CASE("PNG: a file that is not one, truncated or damaged names the file") {
  const std::vector<std::string> rows(16, std::string(16 * 3, 'x'));
  const auto good = write_png(16, 16, PNG_COLOR_TYPE_RGB, 8, rows);
  CHECK_THROWS_AS(decode_png("GIF89a, not a PNG", "shots/cat.png"), DatasetError);
  CHECK_THROWS_WITH(decode_png("GIF89a, not a PNG", "shots/cat.png"),
                    Contains("shots/cat.png") && Contains("not a PNG"));
  CHECK_THROWS_WITH(decode_png("", "empty.png"), Contains("empty.png") && Contains("not a PNG"));
  CHECK_THROWS_WITH(decode_png(good.substr(0, good.size() / 2), "half.png"),
                    Contains("half.png") && Contains("damaged PNG"));
  auto flipped = good;
  flipped[good.size() / 2] ^= 0x40;  // inside the image data: its CRC no longer matches
  CHECK_THROWS_WITH(decode_png(flipped, "flipped.png"),
                    Contains("flipped.png") && Contains("damaged PNG"));
}

// --- JPEG -----------------------------------------------------------------------

TEST_CASE("JPEG: decoded pixels are the ones written, within the codec's loss") {
  // 32 x 16: two flat 16 x 16 halves (one 4:2:0 block each), so only the
  // pixels next to the edge between them ring.
  const uint32_t W = 32, H = 16;
  const std::vector<int> left = {200, 30, 40}, right = {20, 120, 220};
  std::vector<uint8_t> pixels;
  for (uint32_t y = 0; y < H; ++y)
    for (uint32_t x = 0; x < W; ++x)
      for (int c = 0; c < 3; ++c)
        pixels.push_back(static_cast<uint8_t>((x < 16 ? left : right)[c]));
  const auto im = decode_jpeg(write_jpeg(W, H, 3, pixels), "two.jpg");
  REQUIRE(im.width == W);
  REQUIRE(im.height == H);
  REQUIRE(im.channels == 3);
  int worst = 0;
  for (uint32_t y = 0; y < H; ++y) {
    for (uint32_t x : {0u, 4u, 10u, 21u, 27u, 31u}) {  // at least 5 pixels from the edge
      const auto got = rgb(im, x, y);
      for (int c = 0; c < 3; ++c)
        worst = std::max(worst, std::abs(got[c] - (x < 16 ? left : right)[c]));
    }
  }
  // Quality 100 on flat colour: a few levels of rounding through YCbCr.
  CHECK(worst <= 4);
}

TEST_CASE("JPEG: grey expands to three equal channels, odd sizes are kept") {
  const uint32_t W = 13, H = 7;
  std::vector<uint8_t> grey(W * H);
  for (uint32_t i = 0; i < grey.size(); ++i) grey[i] = 90;
  const auto im = decode_jpeg(write_jpeg(W, H, 1, grey), "grey.jpg");
  REQUIRE(im.width == W);
  REQUIRE(im.height == H);
  for (uint32_t y = 0; y < H; ++y) {
    for (uint32_t x = 0; x < W; ++x) {
      const auto p = rgb(im, x, y);
      CHECK(p[0] == p[1]);
      CHECK(p[1] == p[2]);
      CHECK(std::abs(p[0] - 90) <= 1);
    }
  }
}

TEST_CASE("JPEG: a file that is not one names the file") {
  CHECK_THROWS_AS(decode_jpeg("\x89PNG\r\n\x1a\n not a jpeg", "shots/dog.jpg"), DatasetError);
  CHECK_THROWS_WITH(decode_jpeg("\x89PNG\r\n\x1a\n not a jpeg", "shots/dog.jpg"),
                    Contains("shots/dog.jpg") && Contains("damaged JPEG"));
  CHECK_THROWS_WITH(decode_jpeg("", "empty.jpg"), Contains("empty.jpg"));
}

TEST_CASE("JPEG: a truncated file names the file") {
  // Cut inside the entropy-coded data. libjpeg only warns ("Premature end of
  // JPEG file") and would fill the rest with grey; decode_jpeg takes that
  // warning for the damage it is.
  std::vector<uint8_t> pixels(64 * 64 * 3);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 7);
  const auto good = write_jpeg(64, 64, 3, pixels);
  CHECK_THROWS_WITH(decode_jpeg(good.substr(0, good.size() / 2), "cut.jpg"),
                    Contains("cut.jpg") && Contains("Premature end"));
}

// --- resizing -------------------------------------------------------------------

TEST_CASE("resize_square: shrinking averages each block, enlarging repeats pixels") {
  SECTION("4 x 4 to 2 x 2: the mean of each 2 x 2 block") {
    Image in{4, 4, 3, {}};
    // Red: the pixel's number 0..15; green: 100; blue: 0 or 255 by column pair.
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 4; ++x)
        in.pixels.insert(in.pixels.end(), {uint8_t(4 * y + x), 100, uint8_t(x < 2 ? 0 : 255)});
    const auto out = resize_square(in, 2);
    CHECK(out.width == 2);
    CHECK(out.height == 2);
    CHECK(out.channels == 3);
    // Block (0,0) holds 0,1,4,5: mean 2.5; (1,0) 2,3,6,7: 4.5; (0,1) 8,9,12,13: 10.5; (1,1) 12.5.
    const double red[2][2] = {{2.5, 4.5}, {10.5, 12.5}};
    for (uint32_t y = 0; y < 2; ++y) {
      for (uint32_t x = 0; x < 2; ++x) {
        const auto p = rgb(out, x, y);
        CHECK(std::abs(p[0] - red[y][x]) <= 0.5);  // a half is rounded either way
        CHECK(p[1] == 100);
        CHECK(p[2] == (x == 0 ? 0 : 255));
      }
    }
  }
  SECTION("4 x 2 to 2 x 2: stretched, each output the mean of a 2 x 1 strip") {
    Image in{4, 2, 3, {}};
    for (int v : {10, 30, 50, 70, 0, 0, 200, 100})
      in.pixels.insert(in.pixels.end(), {uint8_t(v), uint8_t(v), uint8_t(v)});
    const auto out = resize_square(in, 2);
    CHECK(rgb(out, 0, 0)[0] == 20);
    CHECK(rgb(out, 1, 0)[0] == 60);
    CHECK(rgb(out, 0, 1)[0] == 0);
    CHECK(rgb(out, 1, 1)[0] == 150);
  }
  SECTION("2 x 2 to 4 x 4: each pixel repeated over a 2 x 2 block") {
    Image in{2, 2, 3, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}};
    const auto out = resize_square(in, 4);
    for (uint32_t y = 0; y < 4; ++y)
      for (uint32_t x = 0; x < 4; ++x) CHECK(rgb(out, x, y) == rgb(in, x / 2, y / 2));
  }
  SECTION("the same size is the same image; a flat image stays flat at any size") {
    Image in{3, 3, 3, {}};
    for (int i = 0; i < 27; ++i) in.pixels.push_back(static_cast<uint8_t>(i * 9));
    CHECK(resize_square(in, 3).pixels == in.pixels);
    Image flat{7, 5, 3, std::vector<uint8_t>(7 * 5 * 3, 77)};
    for (uint32_t size : {1u, 2u, 3u, 6u, 11u}) {
      const auto out = resize_square(flat, size);
      CHECK(out.pixels == std::vector<uint8_t>(size * size * 3, 77));
    }
  }
}

// --- audio ----------------------------------------------------------------------

TEST_CASE("WAV: 16-bit mono decodes to the samples written, at its rate") {
  const std::vector<int16_t> samples = {0, 1, -1, 1234, -4321, 32767, -32768};
  const auto a = decode_audio(wav(16000, 1, 16, s16(samples)), "a.wav");
  CHECK(a.sample_rate == 16000);
  CHECK(a.pcm == samples);
}

TEST_CASE("WAV: stereo is averaged to mono, and 8-bit is widened to 16") {
  // Pairs whose mean is exact (the rounding of a half is not specified).
  const auto a = decode_audio(
      wav(22050, 2, 16, s16({100, 300, -50, -150, 32767, 32767, -32768, -32768, 7, -7})),
      "stereo.wav");
  CHECK(a.sample_rate == 22050);
  CHECK(a.pcm == std::vector<int16_t>{200, -100, 32767, -32768, 0});
  // 8-bit WAV is unsigned with 128 as zero; widened by 256 (one step of the high byte).
  const auto b = decode_audio(wav(8000, 1, 8, bytes({128, 129, 127, 255, 0})), "u8.wav");
  CHECK(b.pcm == std::vector<int16_t>{0, 256, -256, 127 * 256, -128 * 256});
}

TEST_CASE("WAV: unreadable audio, and audio over an hour long, name the file") {
  CHECK_THROWS_AS(decode_audio("RIFF....not audio at all", "clips/x.wav"), DatasetError);
  CHECK_THROWS_WITH(decode_audio("RIFF....not audio at all", "clips/x.wav"),
                    Contains("clips/x.wav") && Contains("not readable audio"));
  CHECK_THROWS_WITH(decode_audio("", "empty.wav"), Contains("empty.wav"));
  // 360001 samples at 100 Hz: an hour and a hundredth of a second.
  const auto long_clip = wav(100, 1, 16, s16(std::vector<int16_t>(360001, 5)));
  CHECK_THROWS_WITH(decode_audio(long_clip, "long.wav"),
                    Contains("long.wav") && Contains("over an hour"));
  CHECK(
      decode_audio(wav(100, 1, 16, s16(std::vector<int16_t>(360000, 5))), "hour.wav").pcm.size() ==
      360000);
}

// CRC-32 (ISO-HDLC, as PNG chunks carry it), bit by bit.
uint32_t png_crc(const std::string& bytes) {
  uint32_t c = 0xffffffffu;
  for (unsigned char b : bytes) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return ~c;
}

// A real 1 x 1 PNG whose IHDR is rewritten to claim width x height (its CRC
// recomputed): a few dozen bytes that would decode to width * height pixels.
std::string png_claiming(uint32_t width, uint32_t height) {
  std::string png = write_png(1, 1, PNG_COLOR_TYPE_GRAY, 8, {std::string(1, 7)});
  REQUIRE(png.compare(12, 4, "IHDR") == 0);
  for (int i = 0; i < 4; ++i) {
    png[16 + i] = static_cast<char>(width >> (24 - 8 * i));
    png[20 + i] = static_cast<char>(height >> (24 - 8 * i));
  }
  const uint32_t crc = png_crc(png.substr(12, 17));
  for (int i = 0; i < 4; ++i) png[29 + i] = static_cast<char>(crc >> (24 - 8 * i));
  return png;
}

TEST_CASE("media: an image or clip whose header claims too much is refused before decoding") {
  SECTION("PNG of 100,000 x 100,000 pixels") {
    const auto bomb = png_claiming(100000, 100000);
    REQUIRE(bomb.size() < 4096);
    CHECK_THROWS_WITH(decode_png(bomb, "bomb.png"), Contains("bomb.png") &&
                                                        Contains("claims 100000 x 100000 pixels") &&
                                                        Contains(std::to_string(kMaxImagePixels)));
    // Within each side's limit, over the pixel limit.
    CHECK_THROWS_WITH(decode_png(png_claiming(kMaxImageSide, kMaxImageSide), "wide.png"),
                      Contains("wide.png") && Contains("more than the limit"));
  }
  SECTION("JPEG whose frame header is patched to 65,000 x 65,000") {
    std::string jpeg = write_jpeg(8, 8, 3, std::vector<uint8_t>(8 * 8 * 3, 100));
    const size_t sof = jpeg.find("\xff\xc0");
    REQUIRE(sof != std::string::npos);
    for (size_t at : {sof + 5, sof + 7}) {  // height, then width, big-endian
      jpeg[at] = static_cast<char>(65000 >> 8);
      jpeg[at + 1] = static_cast<char>(65000 & 0xff);
    }
    CHECK_THROWS_WITH(decode_jpeg(jpeg, "bomb.jpg"),
                      Contains("bomb.jpg") && Contains("claims 65000 x 65000 pixels"));
  }
  SECTION("FLAC whose stream header claims 2^31 samples") {
    // fLaC, then the last metadata block: STREAMINFO, 34 bytes.
    std::string flac = "fLaC";
    flac += bytes({0x80, 0, 0, 34});
    flac += bytes({0x10, 0x00, 0x10, 0x00, 0, 0, 0, 0, 0, 0});  // block sizes 4096, frame sizes 0
    // 44100 Hz (20 bits), 1 channel (3 bits: 0), 16 bits (5 bits: 15), 2^31 samples (36 bits).
    const uint64_t packed =
        (uint64_t{44100} << 44) | (uint64_t{0} << 41) | (uint64_t{15} << 36) | (uint64_t{1} << 31);
    for (int i = 7; i >= 0; --i) flac.push_back(static_cast<char>((packed >> (8 * i)) & 0xff));
    flac += std::string(16, '\0');  // MD5 of the audio: unset
    CHECK_THROWS_WITH(decode_audio(flac, "bomb.flac"),
                      Contains("bomb.flac") && Contains("claims 2147483648 frames") &&
                          Contains(std::to_string(kMaxAudioSamples) + " samples"));
  }
  SECTION("WAV of more channels than are read") {
    const auto many =
        wav(8000, kMaxAudioChannels + 1, 16, std::string(2 * (kMaxAudioChannels + 1), 0));
    CHECK_THROWS_WITH(decode_audio(many, "many.wav"), Contains("many.wav") && Contains("channels"));
  }
}

TEST_CASE("media: library versions are named for the lineage") {
  CHECK(png_version().rfind("libpng ", 0) == 0);
  CHECK(jpeg_version().find("libjpeg") == 0);
  CHECK(sndfile_version().find("libsndfile") == 0);
}
