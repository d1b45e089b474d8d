// Packed rows to tensors.
#include "data/dataset_source.h"

namespace moxie {
namespace {

torch::Tensor from(const std::vector<int64_t>& v) {
  return torch::tensor(at::ArrayRef<int64_t>(v), torch::kLong);
}

// Media at input positions (column < S), with slots renumbered to [B, S].
void media(const std::vector<float>& values, int64_t dim, const std::vector<int64_t>& slot,
           const std::vector<int64_t>& index, int64_t L, torch::Tensor* out_values,
           torch::Tensor* out_slot, torch::Tensor* out_index) {
  const int64_t S = L - 1;
  std::vector<int64_t> keep, new_slot, new_index;
  for (size_t i = 0; i < slot.size(); ++i) {
    const int64_t row = slot[i] / L, col = slot[i] % L;
    if (col >= S) continue;
    keep.push_back(static_cast<int64_t>(i));
    new_slot.push_back(row * S + col);
    new_index.push_back(index[i]);
  }
  auto all = torch::from_blob(const_cast<float*>(values.data()),
                              {static_cast<int64_t>(slot.size()), dim}, torch::kFloat);
  *out_values = all.index_select(0, from(keep)).clone();
  *out_slot = from(new_slot);
  *out_index = from(new_index);
}

}  // namespace

Batch to_batch(const PackedBatch& p) {
  const int64_t R = p.rows, L = p.row_len, S = L - 1;
  auto tokens =
      torch::from_blob(const_cast<int32_t*>(p.tokens.data()), {R, L}, torch::kInt).to(torch::kLong);
  auto doc =
      torch::from_blob(const_cast<int32_t*>(p.doc.data()), {R, L}, torch::kInt).to(torch::kLong);
  auto kind = torch::from_blob(const_cast<uint8_t*>(p.kind.data()), {R, L}, torch::kUInt8);
  Batch b;
  b.tokens = tokens.slice(1, 0, S).contiguous();
  b.targets = tokens.slice(1, 1, L).contiguous();
  b.doc = doc.slice(1, 0, S).contiguous();
  auto next_doc = doc.slice(1, 1, L);
  b.loss_mask =
      (kind.slice(1, 1, L).eq(kToken) & next_doc.eq(b.doc) & b.doc.ge(0)).to(torch::kFloat);
  media(p.patches, p.patch_dim, p.patch_slot, p.patch_index, L, &b.patches, &b.patch_slot,
        &b.patch_index);
  media(p.frames, p.frame_dim, p.frame_slot, p.frame_index, L, &b.frames, &b.frame_slot,
        &b.frame_index);
  return b;
}

DatasetSource::DatasetSource(LoaderOptions options, const std::string& provenance_run_dir)
    : options_(options), loader_(std::make_unique<DatasetLoader>(std::move(options))) {
  if (!provenance_run_dir.empty()) {
    provenance_ = std::make_unique<ProvenanceLog>(provenance_run_dir, options_.path,
                                                  loader_->state(), options_.shuffle_block);
  }
}

void DatasetSource::restore(const std::string& state) {
  const auto resume = LoaderState::parse(state);
  auto restored = std::make_unique<DatasetLoader>(options_, &resume);
  loader_ = std::move(restored);
}

void DatasetSource::step_done(int64_t step) {
  if (provenance_) provenance_->step(step, step_before_, last_.after, step_skipped_);
  step_open_ = false;
  step_skipped_.clear();
}

Batch DatasetSource::next() {
  auto packed = loader_->next();
  auto batch = to_batch(packed);
  last_ = PackedBatch{};
  last_.rows = packed.rows;
  last_.row_len = packed.row_len;
  last_.sample_ids = std::move(packed.sample_ids);
  last_.skipped_ids = std::move(packed.skipped_ids);
  last_.before = packed.before;
  last_.after = packed.after;
  if (!step_open_) {
    step_before_ = last_.before;
    step_open_ = true;
  }
  step_skipped_.insert(step_skipped_.end(), last_.skipped_ids.begin(), last_.skipped_ids.end());
  return batch;
}

}  // namespace moxie
