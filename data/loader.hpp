// flaxpp::data::Loader: batches of a Dataset for a given step, shuffled from an explicit key,
// sharded by rank, optionally prepared ahead by a background thread.
//
//   data::Loader loader(ds, shuffle_key, {.batch_size = 128, .remainder = data::Remainder::drop,
//                                         .rank = rank, .num_ranks = size, .prefetch = 2});
//   loader.seek(state.step);                 // resume: the batches continue where they were
//   while (...) { data::Batch b = loader.next(); ... b.data["image"] ... }
//   data::Batch b5 = loader.at(5);           // random access, the same batch next() gives
//
// Order. Epoch e visits the rows in random::permutation(fold_in(key, e), size) (arange without
// shuffle); step s is batch s % steps_per_epoch() of epoch s / steps_per_epoch(). A batch is
// fixed by (key, step) alone, so a run is deterministic for its key and resumable from any step.
// Remainder policy for the last, partial global batch of an epoch: drop it (steps_per_epoch =
// size / batch_size), keep it smaller, or pad it to batch_size by repeating its first rows with
// Batch::mask 0 there (both: ceil(size / batch_size) steps).
// Sharding. batch_size is the global batch: every rank draws the same global batch and keeps its
// contiguous part [begin, end) (sizes differ by at most one, as examples/common/distributed.hpp's
// shard); rank and num_ranks are plain arguments, so data/ needs no MPI.
// Prefetch. With prefetch = k > 0 a thread keeps the next k batches ready for next(); seek()
// restarts it. The thread only copies rows (and runs `transform`), so it never changes a value:
// next() returns at(step) bit for bit either way. Errors in the thread surface in next().
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "../core/random.hpp"
#include "dataset.hpp"

namespace flaxpp::data {

enum class Remainder { drop, keep, pad };

struct LoaderOptions {
  int64_t batch_size = 32;  // the global batch, over all ranks
  bool shuffle = true;
  Remainder remainder = Remainder::drop;
  int rank = 0, num_ranks = 1;
  int prefetch = 0;  // batches prepared ahead by a background thread (0: none)
  // Applied to this rank's rows of each batch (augmentation), with the key
  // fold_in(fold_in(key, 0x7fffffff), step): different from every epoch's shuffling key.
  std::function<Tree(const Tree& batch, random::Key key)> transform;
};

struct Batch {
  int64_t step = 0, epoch = 0, index = 0;  // index: the batch's position within its epoch
  Tree data;                               // this rank's rows, Dataset::gather's layout
  Array mask;                              // float32 (rows,): 1 for real rows, 0 for padding
  int64_t rows() const { return mask.shape().size() ? mask.shape()[0] : 0; }
};

class Loader {
 public:
  Loader(Dataset dataset, random::Key key, LoaderOptions options);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  int64_t steps_per_epoch() const { return steps_per_epoch_; }
  const LoaderOptions& options() const { return options_; }
  // The batch of `step` (no prefetch involved; thread-safe).
  Batch at(int64_t step) const;
  // next() continues from `step` (0 at construction).
  void seek(int64_t step);
  Batch next();
  // How many of the batches next() returned were already waiting (prefetch hits), for benches.
  int64_t ready_hits() const { return hits_; }

 private:
  std::vector<int64_t> order(int64_t epoch) const;  // the epoch's row order
  void start_worker(int64_t step);
  void stop_worker();

  Dataset dataset_;
  random::Key key_;
  LoaderOptions options_;
  int64_t steps_per_epoch_ = 0;
  // The last epoch's order, shared by at() calls (guarded: the worker and next() both read it).
  mutable std::mutex order_mutex_;
  mutable int64_t order_epoch_ = -1;
  mutable std::shared_ptr<const std::vector<int64_t>> order_;

  int64_t next_step_ = 0;
  int64_t hits_ = 0;
  std::thread worker_;
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<Batch> ready_;
  std::exception_ptr error_;
  bool stop_ = false;
};

}  // namespace flaxpp::data
