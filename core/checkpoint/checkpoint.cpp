// Sharded checkpoint files.
#include "core/checkpoint/checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "core/checkpoint/hf_interop.h"
#include "core/checkpoint/safetensors.h"
#include "core/common/file_io.h"

namespace moxie {
namespace fs = std::filesystem;
namespace {

std::string rank_file(int rank) {
  char name[40];
  std::snprintf(name, sizeof(name), "rank-%05d.safetensors", rank);
  return name;
}

// The rank's saved state (moxie.state): a JSON object of strings whose
// "step", where present, is the index's step.
std::map<std::string, std::string> rank_state_of(const std::string& dir,
                                                 const CheckpointIndex& index,
                                                 const safetensors::Reader& reader) {
  const auto it = reader.metadata().find("moxie.state");
  if (it == reader.metadata().end()) throw CheckpointError(reader.path() + " has no rank state");
  std::map<std::string, std::string> state;
  try {
    state = nlohmann::json::parse(it->second).get<std::map<std::string, std::string>>();
  } catch (const nlohmann::json::exception&) {
    throw CheckpointError("checkpoint " + dir + ": " + reader.path() +
                          ": its rank state (moxie.state) is not a JSON object of strings; "
                          "the file is damaged");
  }
  if (state.count("step") && state.at("step") != std::to_string(index.step)) {
    throw CheckpointError("checkpoint " + dir + ": " + reader.path() +
                          ": its rank state is of step '" + excerpt(state.at("step"), 30) +
                          "' but the index is of step " + std::to_string(index.step) +
                          "; the file is damaged");
  }
  return state;
}

}  // namespace

CheckpointWriter::CheckpointWriter(std::string run_dir, int rank)
    : run_dir_(std::move(run_dir)), rank_(rank) {}

CheckpointWriter::~CheckpointWriter() {
  if (thread_.joinable()) thread_.join();
}

void CheckpointWriter::start(int64_t step, const std::vector<CheckpointEntry>& entries,
                             const std::map<std::string, std::string>& state, bool background) {
  finish();  // the staging buffer is free again
  constexpr uint64_t kBlock = 4096;
  constexpr uint32_t kWidestChecksum = 0xFFFFFFFFu;  // reserves the header's room for any checksum
  const std::string dir = checkpoint_dir(run_dir_, step);
  const std::string path = (fs::path(dir) / rank_file(rank_)).string();
  if (rank_ == 0) {
    // A folder saved again (a run resumed from an older checkpoint) is not
    // committed while its files are replaced.
    std::error_code ec;
    fs::remove(fs::path(dir) / kCommitMarker, ec);
  }

  // The file's layout: the header (with room for the checksums, which are
  // computed while the data is written), then the tensors sorted by name.
  std::vector<const CheckpointEntry*> saved;
  std::vector<safetensors::TensorView> views;
  nlohmann::json pieces = nlohmann::json::object();
  for (const auto& e : entries) {
    if (!e.write) continue;
    saved.push_back(&e);
    views.push_back({e.name, safetensors_dtype(e.tensor.scalar_type()), e.tensor.sizes().vec(),
                     nullptr, static_cast<uint64_t>(e.tensor.numel() * e.tensor.element_size())});
    pieces[e.name] = {{"start", e.start}, {"global", e.global_shape}, {"crc32c", kWidestChecksum}};
  }
  std::map<std::string, std::string> meta = {{"moxie.pieces", pieces.dump()},
                                             {"moxie.state", nlohmann::json(state).dump()},
                                             {"moxie.step", std::to_string(step)}};
  const auto layout = safetensors::plan(path, views, meta, kBlock);
  const uint64_t need = (layout.file_size + kBlock - 1) / kBlock * kBlock;
  if (capacity_ < need) {
    buffer_.reset();
    void* p = nullptr;
    if (::posix_memalign(&p, kBlock, need) != 0) {
      throw CheckpointError("cannot allocate " + std::to_string(need) +
                            " bytes to stage the checkpoint of step " + std::to_string(step));
    }
    buffer_.reset(static_cast<uint8_t*>(p));
    capacity_ = need;
  }

  // The copy into the staging buffer: what training waits for.
  const auto t0 = std::chrono::steady_clock::now();
  {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < saved.size(); ++i) {
      const auto& t = saved[i]->tensor;
      torch::from_blob(buffer_.get() + layout.offsets[i], t.sizes(),
                       torch::TensorOptions().dtype(t.scalar_type()))
          .copy_(t.detach());
    }
  }
  copy_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  bytes_ = 0;
  for (const auto& v : views) bytes_ += v.nbytes;
  pending_ = step;
  error_.clear();
  done_ = false;
  thread_ = std::thread([this, views, layout, pieces, meta, dir, path, background]() mutable {
    // Below training in the scheduler: the write takes the cores' idle time
    // (the disk works on its own; the checksums are the CPU's part).
    // SCHED_IDLE: runs only when a core would idle, and any training
    // thread that wakes takes the core at once (nice 19 where refused).
    auto lower_priority = [background] {
      if (!background) return;
      sched_param none{};
      if (::pthread_setschedparam(::pthread_self(), SCHED_IDLE, &none) != 0) {
        ::setpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)), 19);
      }
    };
    lower_priority();
    const auto w0 = std::chrono::steady_clock::now();
    std::vector<uint32_t> crcs(views.size());
    std::thread checksums;
    try {
      fs::create_directories(dir);
      // Checksums on a second thread while the data goes to disk; the
      // header that holds them is written last.
      checksums = std::thread([&] {
        lower_priority();
        for (size_t i = 0; i < views.size(); ++i)
          crcs[i] = checksum(buffer_.get() + layout.offsets[i], views[i].nbytes);
      });
      safetensors::write_buffer(
          path, buffer_.get(), layout.file_size, capacity_, layout.prefix.size(), [&] {
            checksums.join();
            for (size_t i = 0; i < views.size(); ++i) pieces[views[i].name]["crc32c"] = crcs[i];
            meta["moxie.pieces"] = pieces.dump();
            const auto final_layout =
                safetensors::plan(path, views, meta, kBlock, layout.prefix.size());
            if (final_layout.prefix.size() != layout.prefix.size()) {
              throw CheckpointError(path +
                                    ": the header outgrew the room kept for it");  // cannot happen
            }
            std::memcpy(buffer_.get(), final_layout.prefix.data(), final_layout.prefix.size());
          });
    } catch (const std::exception& e) {
      error_ = e.what();
    }
    if (checksums.joinable()) checksums.join();
    write_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
    done_ = true;
  });
}

std::string CheckpointWriter::finish() {
  if (thread_.joinable()) thread_.join();
  pending_ = -1;
  return error_;
}

void commit_from_ranks(const std::string& run_dir, int64_t step, int world,
                       const std::string& layout, int keep) {
  const std::string dir = checkpoint_dir(run_dir, step);
  CheckpointIndex index;
  index.step = step;
  index.layout = layout;
  index.world = world;
  std::map<std::string, size_t> position;
  for (int r = 0; r < world; ++r) {
    const std::string file = rank_file(r);
    index.rank_files.push_back(file);
    // The header as it is on disk now is what later loads are checked against.
    index.files.push_back(describe_rank_file(dir, file));
    std::unique_ptr<safetensors::Reader> reader;
    try {
      reader = std::make_unique<safetensors::Reader>((fs::path(dir) / file).string());
    } catch (const safetensors::Error& e) {
      throw CheckpointError(std::string("cannot commit checkpoint ") + dir + ": " + e.what());
    }
    const auto& meta = reader->metadata();
    const auto it = meta.find("moxie.pieces");
    if (it == meta.end()) throw CheckpointError(reader->path() + " has no piece table");
    try {
      const auto pieces = nlohmann::json::parse(it->second);
      for (const auto& info : reader->tensors()) {
        const auto& p = pieces.at(info.name);
        auto [pos, fresh] = position.emplace(info.name, index.tensors.size());
        if (fresh) {
          CheckpointTensor t;
          t.name = info.name;
          t.dtype = safetensors::dtype_name(info.dtype);
          t.shape = p.at("global").get<std::vector<int64_t>>();
          index.tensors.push_back(std::move(t));
        }
        CheckpointPiece piece;
        piece.rank = r;
        piece.file = file;
        piece.name = info.name;
        piece.start = p.at("start").get<std::vector<int64_t>>();
        piece.shape = info.shape;
        piece.crc32c = p.at("crc32c").get<uint32_t>();
        index.tensors[pos->second].pieces.push_back(std::move(piece));
      }
    } catch (const nlohmann::json::exception&) {
      throw CheckpointError(reader->path() +
                            ": its piece table (moxie.pieces) does not describe its tensors; "
                            "the save is damaged and was not committed");
    }
  }
  commit_checkpoint(dir, index);
  prune_checkpoints(run_dir, keep);
}

std::map<std::string, std::string> load_checkpoint(const std::string& dir,
                                                   std::vector<CheckpointEntry>& entries, int rank,
                                                   int world) {
  const auto index = read_checkpoint_index(dir);
  std::map<std::string, const CheckpointTensor*> by_name;
  for (const auto& t : index.tensors) by_name[t.name] = &t;
  std::map<std::string, std::unique_ptr<safetensors::Reader>> readers;
  std::map<std::string, int> rank_of;
  for (int r = 0; r < index.world; ++r) rank_of[index.rank_files[static_cast<size_t>(r)]] = r;
  auto reader_of = [&](const std::string& file) -> safetensors::Reader& {
    auto& r = readers[file];
    if (!r) {
      // Size and header checksum against the index before the header is parsed.
      const std::string path = checked_rank_file(dir, index, rank_of.at(file));
      try {
        r = std::make_unique<safetensors::Reader>(path);
      } catch (const safetensors::Error& e) {
        throw CheckpointError(std::string("checkpoint ") + dir + ": " + e.what());
      }
    }
    return *r;
  };
  // What this rank reads: every piece that overlaps one of its boxes.
  struct Work {
    CheckpointEntry* entry;
    const CheckpointPiece* piece;
    const safetensors::TensorInfo* info;
    const safetensors::Reader* reader;
    std::vector<int64_t> lo, hi;  // the overlap, in global coordinates
    bool whole;                   // the piece is exactly the box: read straight into the tensor
    torch::Tensor data;           // filled by the reading thread
  };
  std::vector<Work> work;
  std::map<std::string, int64_t> needed;
  for (auto& e : entries) {
    const auto found = by_name.find(e.name);
    if (found == by_name.end()) {
      throw CheckpointError("checkpoint " + dir + " has no tensor " + e.name +
                            " (saved by another model or config?)");
    }
    const auto& t = *found->second;
    if (t.shape != e.global_shape) {
      throw CheckpointError("checkpoint " + dir + ": " + e.name +
                            " has another shape than this model's; "
                            "the model config must match the one it was saved with");
    }
    const int64_t dims = static_cast<int64_t>(t.shape.size());
    needed[e.name] = e.tensor.numel();
    for (const auto& p : t.pieces) {
      std::vector<int64_t> lo(dims), hi(dims);
      bool empty = false;
      for (int64_t d = 0; d < dims; ++d) {
        lo[d] = std::max(p.start[d], e.start[d]);
        hi[d] = std::min(p.start[d] + p.shape[d], e.start[d] + e.tensor.size(d));
        empty = empty || lo[d] >= hi[d];
      }
      if (empty) continue;
      auto& reader = reader_of(p.file);
      const auto* info = reader.find(p.name);
      if (!info || info->shape != p.shape) {
        throw CheckpointError("checkpoint " + dir + ": " + p.file + " lacks its piece of " +
                              e.name);
      }
      if (t.dtype != safetensors::dtype_name(info->dtype)) {
        throw CheckpointError("checkpoint " + dir + ": " + p.file + " holds " + e.name + " as " +
                              safetensors::dtype_name(info->dtype) + " but the index says " +
                              t.dtype + " (the file is damaged or from another save)");
      }
      const bool whole = p.start == e.start && p.shape == e.tensor.sizes().vec() &&
                         torch_dtype(info->dtype) == e.tensor.scalar_type() &&
                         e.tensor.is_contiguous() && e.tensor.device().is_cpu();
      work.push_back({&e, &p, info, &reader, std::move(lo), std::move(hi), whole, {}});
    }
  }
  // In file order, so that each file is read front to back.
  std::sort(work.begin(), work.end(), [](const Work& a, const Work& b) {
    return std::tie(a.piece->file, a.info->offset) < std::tie(b.piece->file, b.info->offset);
  });

  // A reading thread stays ahead (by at most kAhead bytes) of this thread,
  // which checks each piece's checksum and copies it into place, so that the
  // disk and the CPU work at once.
  constexpr uint64_t kAhead = 256 << 20;
  std::mutex mu;
  std::condition_variable cv;
  size_t read_count = 0, used_count = 0;
  uint64_t ahead = 0;
  bool stop = false;
  std::string read_error;
  std::thread reading([&] {
    int fd = -1;
    const safetensors::Reader* open_reader = nullptr;
    try {
      for (size_t k = 0; k < work.size(); ++k) {
        auto& w = work[k];
        {
          std::unique_lock<std::mutex> lock(mu);
          cv.wait(lock, [&] { return stop || ahead == 0 || ahead + w.info->nbytes <= kAhead; });
          if (stop) break;
        }
        if (w.reader != open_reader) {
          if (fd >= 0) ::close(fd);
          fd = ::open(w.reader->path().c_str(), O_RDONLY | O_CLOEXEC);
          if (fd < 0)
            throw CheckpointError("cannot open " + w.reader->path() + ": " + std::strerror(errno));
          (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
          open_reader = w.reader;
        }
        auto data = w.whole
                        ? w.entry->tensor
                        : torch::empty(w.piece->shape,
                                       torch::TensorOptions().dtype(torch_dtype(w.info->dtype)));
        auto* out = static_cast<char*>(data.data_ptr());
        uint64_t done = 0;
        while (done < w.info->nbytes) {
          const ssize_t n = ::pread(fd, out + done, w.info->nbytes - done,
                                    static_cast<off_t>(w.info->offset + done));
          if (n < 0 && errno == EINTR) continue;
          if (n <= 0) {
            throw CheckpointError("checkpoint " + dir + ": " + w.piece->file +
                                  " is truncated (reading " + w.entry->name + ")");
          }
          done += static_cast<uint64_t>(n);
        }
        std::lock_guard<std::mutex> lock(mu);
        w.data = std::move(data);
        ahead += w.info->nbytes;
        read_count = k + 1;
        cv.notify_all();
      }
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(mu);
      read_error = e.what();
      stop = true;
      cv.notify_all();
    }
    if (fd >= 0) ::close(fd);
  });
  auto stop_reading = [&] {
    {
      std::lock_guard<std::mutex> lock(mu);
      stop = true;
      cv.notify_all();
    }
    reading.join();
  };

  torch::NoGradGuard no_grad;
  try {
    for (; used_count < work.size(); ++used_count) {
      auto& w = work[used_count];
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return read_count > used_count || !read_error.empty(); });
        if (read_count <= used_count) throw CheckpointError(read_error);
      }
      // Each piece is read once (one box per tensor per rank), so checked once.
      if (checksum(w.data.data_ptr(), w.info->nbytes) != w.piece->crc32c) {
        throw CheckpointError("checkpoint " + dir + ": " + w.piece->file + ": the bytes of " +
                              w.entry->name + " do not match their checksum (the file is damaged)");
      }
      const auto& p = *w.piece;
      auto& e = *w.entry;
      if (w.whole) {
        needed[e.name] -= w.data.numel();
      } else {
        auto src = w.data, dst = e.tensor;
        for (size_t d = 0; d < w.lo.size(); ++d) {
          const auto dd = static_cast<int64_t>(d);
          src = src.narrow(dd, w.lo[d] - p.start[d], w.hi[d] - w.lo[d]);
          dst = dst.narrow(dd, w.lo[d] - e.start[d], w.hi[d] - w.lo[d]);
        }
        dst.copy_(src.to(dst.scalar_type()));
        needed[e.name] -= src.numel();
      }
      std::lock_guard<std::mutex> lock(mu);
      w.data = torch::Tensor();
      ahead -= w.info->nbytes;
      cv.notify_all();
    }
  } catch (...) {
    stop_reading();
    throw;
  }
  stop_reading();
  for (const auto& e : entries) {
    if (needed[e.name] != 0) {
      throw CheckpointError("checkpoint " + dir + " covers " +
                            std::to_string(e.tensor.numel() - needed[e.name]) + " of the " +
                            std::to_string(e.tensor.numel()) + " values of " + e.name +
                            " this rank needs");
    }
  }
  const int from = index.world == world ? rank : 0;
  auto& reader = reader_of(index.rank_files.at(static_cast<size_t>(from)));
  return rank_state_of(dir, index, reader);
}

namespace {
std::vector<CheckpointEntry> whole_model_entries(CausalLM& model) {
  std::vector<CheckpointEntry> out;
  for (const auto& item : model->named_parameters()) {
    out.push_back({"model/" + item.key(), item.value(),
                   std::vector<int64_t>(static_cast<size_t>(item.value().dim()), 0),
                   item.value().sizes().vec(), true});
  }
  for (const auto& item : model->named_buffers()) {
    out.push_back({"buffer/" + item.key(), item.value(),
                   std::vector<int64_t>(static_cast<size_t>(item.value().dim()), 0),
                   item.value().sizes().vec(), true});
  }
  return out;
}
}  // namespace

LoadedModel load_model(const std::string& dir) {
  const fs::path config_path = fs::path(dir).parent_path().parent_path() / "config.yaml";
  if (!fs::exists(config_path)) {
    throw CheckpointError("no run config " + config_path.string() +
                          " beside the checkpoint; CHECKPOINT must be RUN/checkpoints/step-N");
  }
  LoadedModel m;
  m.config = load_config(config_path.string());
  m.model = CausalLM(m.config.model, m.config.moe);
  if (m.config.lora.rank > 0) m.model->add_lora(m.config.lora);
  auto entries = whole_model_entries(m.model);
  // A fine-tuning run's checkpoints hold what trained (adapters, unfrozen
  // weights); the rest is its finetune.base's.
  const auto index = read_checkpoint_index(dir);
  std::set<std::string> held;
  for (const auto& t : index.tensors) held.insert(t.name);
  std::vector<CheckpointEntry> from_base, from_run;
  for (auto& e : entries) (held.count(e.name) ? from_run : from_base).push_back(e);
  if (!from_base.empty()) {
    if (m.config.finetune.base.empty()) {
      throw CheckpointError("checkpoint " + dir + " has no tensor " + from_base.front().name +
                            " (saved by another model or config?)");
    }
    std::set<std::string> adapters;
    for (const auto& spec : m.model->param_specs())
      if (spec.adapter) adapters.insert("model/" + spec.name);
    std::vector<CheckpointEntry> base_entries;
    for (auto& e : from_base) {
      if (adapters.count(e.name)) {
        throw CheckpointError("checkpoint " + dir + " has no adapter " + e.name);
      }
      base_entries.push_back(e);
    }
    load_checkpoint(m.config.finetune.base, base_entries, 0, 1);
  }
  const auto state = load_checkpoint(dir, from_run, 0, 1);
  m.step = state.count("step") ? std::stoll(state.at("step")) : 0;
  m.model->eval();
  return m;
}

std::string write_weights_checkpoint(CausalLM& model, Config config, const std::string& run_dir) {
  config.train.run_dir = run_dir;
  fs::create_directories(run_dir);
  try {
    write_file_atomically((fs::path(run_dir) / "config.yaml").string(), to_yaml(config),
                          "run config");
  } catch (const FileError& e) {
    throw CheckpointError(e.what());
  }
  CheckpointWriter writer(run_dir, 0);
  writer.start(0, whole_model_entries(model), {{"step", "0"}});
  const std::string error = writer.finish();
  if (!error.empty()) throw CheckpointError(error);
  commit_from_ranks(run_dir, 0, 1, "imported (one process)", 1000000);
  return checkpoint_dir(run_dir, 0);
}

}  // namespace moxie
