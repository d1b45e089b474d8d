// Decoding media for the dataset builder, through the standard libraries:
// PNG (libpng), JPEG (libjpeg-turbo), and audio (libsndfile: WAV, FLAC, Ogg
// and the rest it reads). Torch- and protobuf-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moxie {

struct Image {
  uint32_t width = 0, height = 0, channels = 0;  // channels: 3 (RGB)
  std::vector<uint8_t> pixels;                   // row-major, interleaved
};

struct Audio {
  uint32_t sample_rate = 0;
  std::vector<int16_t> pcm;  // mono (channels averaged)
};

// What a decode may claim, checked against the file's header before any
// pixel or sample buffer is sized, so a small file claiming a huge image or
// clip (a decompression bomb) is refused, naming the file and the limit.
constexpr uint32_t kMaxImageSide = 16384;                 // pixels, width or height
constexpr uint64_t kMaxImagePixels = uint64_t{1} << 26;   // 67,108,864 (8192 x 8192)
constexpr uint64_t kMaxAudioSamples = uint64_t{1} << 28;  // 268,435,456, all channels
constexpr int kMaxAudioChannels = 64;
constexpr int kMaxAudioSampleRate = 768000;  // Hz

// `name` is used in error messages (DatasetError). Every image is converted
// to 8-bit RGB (grey expanded, alpha composited over white, 16-bit reduced).
Image decode_png(const std::string& bytes, const std::string& name);
Image decode_jpeg(const std::string& bytes, const std::string& name);
// Resized to size x size by averaging the input pixels each output pixel
// covers (box filter; nearest neighbour when enlarging). Aspect ratio is not
// kept: the image is stretched.
Image resize_square(const Image& image, uint32_t size);

Audio decode_audio(const std::string& bytes, const std::string& name);

// Library versions, for the lineage of every sample they decode.
std::string png_version();
std::string jpeg_version();
std::string sndfile_version();

}  // namespace moxie
