// libFuzzer target: arbitrary bytes as a PNG, JPEG or audio file (WAV, FLAC
// and the rest libsndfile reads); the first byte chooses the decoder (0 PNG,
// 1 JPEG, 2 audio), the rest is the file. Decoding must end in a DatasetError
// naming the file or pixels and samples inside the stated limits (media.h):
// never a crash, a hang or a buffer sized by a header's claim
// (AddressSanitizer and UBSan on moxie's code; the libraries are Debian's).
// Started on an empty corpus folder, it first writes small valid files of
// each kind there as the seeds.
// jpeglib.h needs size_t and FILE declared before it.
// clang-format off
#include <cstdio>
#include <jpeglib.h>
// clang-format on
#include <png.h>
#include <sndfile.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "core/common/file_io.h"
#include "data/dataset.h"
#include "data/media.h"

namespace fs = std::filesystem;

namespace {

void png_append(png_structp png, png_bytep data, png_size_t n) {
  static_cast<std::string*>(png_get_io_ptr(png))->append(reinterpret_cast<char*>(data), n);
}
void png_flush(png_structp) {}

std::string png_file(uint32_t w, uint32_t h, int color, int interlace) {
  std::string out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  png_set_write_fn(png, &out, png_append, png_flush);
  png_set_IHDR(png, info, w, h, 8, color, interlace, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  const uint32_t channels = color == PNG_COLOR_TYPE_RGB ? 3 : 1;
  std::vector<png_byte> pixels(static_cast<size_t>(w) * h * channels);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<png_byte>(i * 37);
  std::vector<png_bytep> rows;
  for (uint32_t y = 0; y < h; ++y) rows.push_back(pixels.data() + y * w * channels);
  png_write_image(png, rows.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

std::string jpeg_file(uint32_t w, uint32_t h, bool progressive) {
  jpeg_compress_struct c{};
  jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* mem = nullptr;
  unsigned long n = 0;
  jpeg_mem_dest(&c, &mem, &n);
  c.image_width = w;
  c.image_height = h;
  c.input_components = 3;
  c.in_color_space = JCS_RGB;
  jpeg_set_defaults(&c);
  if (progressive) jpeg_simple_progression(&c);
  jpeg_start_compress(&c, TRUE);
  std::vector<unsigned char> row(w * 3);
  for (uint32_t y = 0; y < h; ++y) {
    for (uint32_t x = 0; x < w * 3; ++x) row[x] = static_cast<unsigned char>(x * 11 + y * 5);
    JSAMPROW r = row.data();
    jpeg_write_scanlines(&c, &r, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  std::string out(reinterpret_cast<char*>(mem), n);
  std::free(mem);
  return out;
}

// WAV or FLAC through libsndfile, into a temporary file.
std::string sound_file(int format, int channels, int rate, int frames) {
  const std::string path = fs::temp_directory_path() / "moxie-fuzz-media-seed";
  SF_INFO info{};
  info.channels = channels;
  info.samplerate = rate;
  info.format = format;
  SNDFILE* sf = sf_open(path.c_str(), SFM_WRITE, &info);
  if (!sf) std::abort();
  std::vector<short> pcm(static_cast<size_t>(frames) * channels);
  for (size_t i = 0; i < pcm.size(); ++i) pcm[i] = static_cast<short>(i * 977);
  sf_writef_short(sf, pcm.data(), frames);
  sf_close(sf);
  const std::string out = moxie::read_small_file(path, "seed", 1 << 20);
  fs::remove(path);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  for (int i = 1; i < *argc; ++i) {
    const std::string arg = (*argv)[i];
    if (arg.empty() || arg[0] == '-' || !fs::is_directory(arg) || !fs::is_empty(arg)) continue;
    auto seed = [&](const char* name, char kind, const std::string& bytes) {
      moxie::write_file_atomically(arg + "/" + name, std::string(1, kind) + bytes, "seed");
    };
    seed("png-rgb", 0, png_file(5, 3, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE));
    seed("png-grey-interlaced", 0, png_file(9, 7, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_ADAM7));
    seed("jpeg", 1, jpeg_file(16, 8, false));
    seed("jpeg-progressive", 1, jpeg_file(9, 17, true));
    seed("wav-stereo", 2, sound_file(SF_FORMAT_WAV | SF_FORMAT_PCM_16, 2, 8000, 64));
    seed("flac-mono", 2, sound_file(SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 1, 16000, 300));
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    switch (data[0] % 3) {
      case 0:
      case 1: {
        const auto im = data[0] % 3 == 0 ? moxie::decode_png(bytes, "fuzz.png")
                                         : moxie::decode_jpeg(bytes, "fuzz.jpg");
        if (static_cast<uint64_t>(im.width) * im.height > moxie::kMaxImagePixels ||
            im.pixels.size() != static_cast<size_t>(im.width) * im.height * 3) {
          std::abort();
        }
        break;
      }
      default: {
        const auto audio = moxie::decode_audio(bytes, "fuzz.wav");
        if (audio.pcm.size() > moxie::kMaxAudioSamples) std::abort();
      }
    }
  } catch (const moxie::DatasetError&) {
  }
  return 0;
}
