// Options of the data source.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moxie {

struct DataOptions {
  std::string source = "text";                   // text: a folder of text files
  std::string path = ".data/text";               // a folder (searched recursively) or one file
  std::vector<std::string> extensions = {".txt"};
  std::string tokenizer = "byte";                // byte: 256 bytes + BOS, EOS, PAD
  double eval_fraction = 0.05;                   // share of documents held out for evaluation
  int64_t seq_len = 128;
};

}  // namespace moxie
