// libpng, libjpeg-turbo and libsndfile, reading from memory.
#include "data/media.h"

#include <jpeglib.h>
#include <png.h>
#include <sndfile.h>

#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <cstring>

#include "data/dataset.h"

namespace moxie {
namespace {

[[noreturn]] void bad(const std::string& name, const std::string& what) {
  throw DatasetError(name + ": " + what + "; convert or remove the file and rebuild");
}

// Why an image of this header's size is not decoded, or "" when it may be.
std::string too_large(const char* format, uint64_t width, uint64_t height) {
  const std::string size = std::to_string(width) + " x " + std::to_string(height);
  if (width == 0 || height == 0) return std::string(format) + " header claims " + size + " pixels";
  if (width > kMaxImageSide || height > kMaxImageSide || width * height > kMaxImagePixels) {
    return std::string(format) + " header claims " + size + " pixels, more than the limit of " +
           std::to_string(kMaxImageSide) + " on a side and " + std::to_string(kMaxImagePixels) +
           " pixels";
  }
  return "";
}

// --- PNG ----------------------------------------------------------------------

struct PngRead {
  const std::string* bytes;
  size_t at = 0;
};

void png_read_fn(png_structp png, png_bytep out, png_size_t n) {
  auto* r = static_cast<PngRead*>(png_get_io_ptr(png));
  if (r->at + n > r->bytes->size()) png_error(png, "truncated PNG data");
  std::memcpy(out, r->bytes->data() + r->at, n);
  r->at += n;
}

struct PngFailure {
  char message[256] = {0};
};

void png_error_fn(png_structp png, png_const_charp msg) {
  auto* f = static_cast<PngFailure*>(png_get_error_ptr(png));
  std::snprintf(f->message, sizeof(f->message), "%s", msg);
  png_longjmp(png, 1);
}
void png_warning_fn(png_structp, png_const_charp) {}

}  // namespace

Image decode_png(const std::string& bytes, const std::string& name) {
  if (bytes.size() < 8 || png_sig_cmp(reinterpret_cast<png_const_bytep>(bytes.data()), 0, 8) != 0) {
    bad(name, "not a PNG file");
  }
  PngFailure failure;
  png_structp png =
      png_create_read_struct(PNG_LIBPNG_VER_STRING, &failure, png_error_fn, png_warning_fn);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info) {
    png_destroy_read_struct(&png, &info, nullptr);
    bad(name, "out of memory decoding PNG");
  }
  PngRead reader{&bytes};
  Image image;
  std::vector<png_bytep> rows;
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    bad(name, std::string("damaged PNG (libpng: ") + failure.message + ")");
  }
  png_set_read_fn(png, &reader, png_read_fn);
  // libpng's own limits stay as a backstop behind the check below; 0x7fffffff
  // so that its message never pre-empts moxie's.
  png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
  png_set_chunk_malloc_max(png, 64u << 20);
  png_read_info(png, info);
  if (const std::string why =
          too_large("PNG", png_get_image_width(png, info), png_get_image_height(png, info));
      !why.empty()) {
    png_destroy_read_struct(&png, &info, nullptr);
    bad(name, why);
  }
  const auto color = png_get_color_type(png, info);
  if (png_get_bit_depth(png, info) == 16) png_set_strip_16(png);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) {
    png_set_expand_gray_1_2_4_to_8(png);
    png_set_gray_to_rgb(png);
  }
  if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  png_color_16 white{0, 255, 255, 255, 255};
  png_set_background(png, &white, PNG_BACKGROUND_GAMMA_SCREEN, 0, 1.0);  // drops alpha
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  image.width = png_get_image_width(png, info);
  image.height = png_get_image_height(png, info);
  image.channels = png_get_channels(png, info);
  if (image.channels != 3 || png_get_rowbytes(png, info) != image.width * 3) {
    png_destroy_read_struct(&png, &info, nullptr);
    bad(name, "PNG layout not convertible to 8-bit RGB");
  }
  image.pixels.resize(static_cast<size_t>(image.width) * image.height * 3);
  rows.resize(image.height);
  for (uint32_t y = 0; y < image.height; ++y) rows[y] = image.pixels.data() + y * image.width * 3;
  png_read_image(png, rows.data());
  png_destroy_read_struct(&png, &info, nullptr);
  return image;
}

// --- JPEG ---------------------------------------------------------------------

namespace {
struct JpegFailure {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX] = {0};
};
void jpeg_error_fn(j_common_ptr cinfo) {
  auto* f = reinterpret_cast<JpegFailure*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, f->message);
  std::longjmp(f->jump, 1);
}
// Trace messages (level >= 0) are dropped; a warning (level -1) is damage
// libjpeg would paper over (a truncated file decodes to grey rows, "Premature
// end of JPEG file"), so it fails the decode like an error.
void jpeg_message_fn(j_common_ptr cinfo, int level) {
  if (level < 0) jpeg_error_fn(cinfo);
}
}  // namespace

Image decode_jpeg(const std::string& bytes, const std::string& name) {
  jpeg_decompress_struct cinfo{};
  JpegFailure failure;
  cinfo.err = jpeg_std_error(&failure.mgr);
  failure.mgr.error_exit = jpeg_error_fn;
  failure.mgr.emit_message = jpeg_message_fn;
  Image image;
  if (setjmp(failure.jump)) {
    jpeg_destroy_decompress(&cinfo);
    bad(name, std::string("damaged JPEG (libjpeg: ") + failure.message + ")");
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, reinterpret_cast<const unsigned char*>(bytes.data()),
               static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&cinfo, TRUE);
  cinfo.out_color_space = JCS_RGB;
  if (const std::string why = too_large("JPEG", cinfo.image_width, cinfo.image_height);
      !why.empty()) {
    jpeg_destroy_decompress(&cinfo);
    bad(name, why);
  }
  // A progressive file buffers every coefficient: bounded like the pixels.
  cinfo.mem->max_memory_to_use = 512L << 20;
  jpeg_start_decompress(&cinfo);
  image.width = cinfo.output_width;
  image.height = cinfo.output_height;
  image.channels = 3;
  image.pixels.resize(static_cast<size_t>(image.width) * image.height * 3);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row =
        image.pixels.data() + static_cast<size_t>(cinfo.output_scanline) * image.width * 3;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return image;
}

Image resize_square(const Image& in, uint32_t size) {
  Image out;
  out.width = out.height = size;
  out.channels = in.channels;
  out.pixels.resize(static_cast<size_t>(size) * size * in.channels);
  for (uint32_t y = 0; y < size; ++y) {
    const uint32_t y0 = y * in.height / size;
    const uint32_t y1 = std::max(y0 + 1, (y + 1) * in.height / size);
    for (uint32_t x = 0; x < size; ++x) {
      const uint32_t x0 = x * in.width / size;
      const uint32_t x1 = std::max(x0 + 1, (x + 1) * in.width / size);
      for (uint32_t c = 0; c < in.channels; ++c) {
        uint64_t sum = 0;
        for (uint32_t yy = y0; yy < y1; ++yy)
          for (uint32_t xx = x0; xx < x1; ++xx)
            sum += in.pixels[(static_cast<size_t>(yy) * in.width + xx) * in.channels + c];
        const uint64_t n = static_cast<uint64_t>(y1 - y0) * (x1 - x0);
        out.pixels[(static_cast<size_t>(y) * size + x) * in.channels + c] =
            static_cast<uint8_t>((sum + n / 2) / n);
      }
    }
  }
  return out;
}

// --- audio --------------------------------------------------------------------

namespace {
struct MemoryFile {
  const std::string* bytes;
  sf_count_t at = 0;
};
sf_count_t mf_length(void* p) {
  return static_cast<sf_count_t>(static_cast<MemoryFile*>(p)->bytes->size());
}
sf_count_t mf_seek(sf_count_t offset, int whence, void* p) {
  auto* f = static_cast<MemoryFile*>(p);
  const auto size = static_cast<sf_count_t>(f->bytes->size());
  sf_count_t to = whence == SEEK_SET ? offset : whence == SEEK_CUR ? f->at + offset : size + offset;
  f->at = std::clamp<sf_count_t>(to, 0, size);
  return f->at;
}
sf_count_t mf_read(void* out, sf_count_t n, void* p) {
  auto* f = static_cast<MemoryFile*>(p);
  const auto size = static_cast<sf_count_t>(f->bytes->size());
  n = std::min(n, size - f->at);
  std::memcpy(out, f->bytes->data() + f->at, static_cast<size_t>(n));
  f->at += n;
  return n;
}
sf_count_t mf_write(const void*, sf_count_t, void*) { return 0; }
sf_count_t mf_tell(void* p) { return static_cast<MemoryFile*>(p)->at; }
}  // namespace

Audio decode_audio(const std::string& bytes, const std::string& name) {
  SF_VIRTUAL_IO io{mf_length, mf_seek, mf_read, mf_write, mf_tell};
  MemoryFile file{&bytes};
  SF_INFO info{};
  SNDFILE* sf = sf_open_virtual(&io, SFM_READ, &info, &file);
  if (!sf) bad(name, std::string("not readable audio (libsndfile: ") + sf_strerror(nullptr) + ")");
  std::string why;
  if (info.channels < 1 || info.channels > kMaxAudioChannels) {
    why = "header claims " + std::to_string(info.channels) + " channels (1 to " +
          std::to_string(kMaxAudioChannels) + " are read)";
  } else if (info.samplerate < 1 || info.samplerate > kMaxAudioSampleRate) {
    why = "header claims a sample rate of " + std::to_string(info.samplerate) + " Hz (1 to " +
          std::to_string(kMaxAudioSampleRate) + " are read)";
  } else if (info.frames < 0 ||
             static_cast<uint64_t>(info.frames) > kMaxAudioSamples / info.channels) {
    why = "header claims " + std::to_string(info.frames) + " frames of " +
          std::to_string(info.channels) + " channels, more than the limit of " +
          std::to_string(kMaxAudioSamples) + " samples";
  } else if (info.frames > static_cast<sf_count_t>(info.samplerate) * 3600) {
    why = "audio over an hour long (" + std::to_string(info.frames) + " frames at " +
          std::to_string(info.samplerate) + " Hz)";
  }
  if (!why.empty()) {
    sf_close(sf);
    bad(name, why);
  }
  // Read in blocks: what is held follows what the file really decodes to,
  // never only what its header claims.
  std::vector<int16_t> interleaved;
  std::vector<int16_t> block(static_cast<size_t>(4096) * info.channels);
  sf_count_t got = 0;
  while (got < info.frames) {
    const sf_count_t want = std::min<sf_count_t>(4096, info.frames - got);
    const sf_count_t n = sf_readf_short(sf, block.data(), want);
    if (n <= 0) break;
    interleaved.insert(interleaved.end(), block.begin(), block.begin() + n * info.channels);
    got += n;
  }
  sf_close(sf);
  Audio audio;
  audio.sample_rate = static_cast<uint32_t>(info.samplerate);
  audio.pcm.resize(static_cast<size_t>(got));
  for (sf_count_t i = 0; i < got; ++i) {
    int32_t sum = 0;
    for (int c = 0; c < info.channels; ++c)
      sum += interleaved[static_cast<size_t>(i * info.channels + c)];
    audio.pcm[static_cast<size_t>(i)] = static_cast<int16_t>(sum / info.channels);
  }
  return audio;
}

std::string png_version() { return std::string("libpng ") + png_get_libpng_ver(nullptr); }
std::string jpeg_version() {
#ifdef LIBJPEG_TURBO_VERSION
#define MOXIE_STR2(x) #x
#define MOXIE_STR(x) MOXIE_STR2(x)
  return "libjpeg-turbo " MOXIE_STR(LIBJPEG_TURBO_VERSION);
#else
  return "libjpeg " + std::to_string(JPEG_LIB_VERSION);
#endif
}
std::string sndfile_version() { return sf_version_string(); }

}  // namespace moxie
