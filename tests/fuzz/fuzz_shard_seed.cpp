// Writes valid shards into a folder: the fuzzer's seed corpus.
#include <string>

#include "data/shard_io.h"

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const std::string dir = argv[1];
  for (int n : {1, 3}) {
    moxie::ShardWriter writer(dir + "/seed-" + std::to_string(n) + ".shard");
    for (int i = 0; i < n; ++i) {
      moxie::data::Sample s;
      s.set_id(static_cast<uint64_t>(i));
      s.add_sources(static_cast<uint32_t>(i));
      s.add_segments()->mutable_text()->set_tokens(std::string("\x64\0\x65\0\x66\0", 6));
      s.mutable_segments(0)->mutable_text()->set_width(2);
      auto* image = s.add_segments()->mutable_image();
      image->set_width(2);
      image->set_height(2);
      image->set_channels(3);
      image->set_pixels(std::string(12, '\x7f'));
      auto* audio = s.add_segments()->mutable_audio();
      audio->set_sample_rate(16000);
      audio->set_channels(1);
      audio->set_pcm_s16le(std::string(64, '\x01'));
      writer.append(s, 12);
    }
    writer.close();
  }
  return 0;
}
