#include "data/loader.hpp"

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>

namespace flaxpp::data {

Loader::Loader(Dataset dataset, random::Key key, LoaderOptions options)
    : dataset_(std::move(dataset)), key_(key), options_(std::move(options)) {
  const auto& o = options_;
  if (o.batch_size < 1)
    throw std::invalid_argument("Loader: batch_size must be >= 1, got " +
                                std::to_string(o.batch_size));
  if (o.num_ranks < 1 || o.rank < 0 || o.rank >= o.num_ranks)
    throw std::invalid_argument("Loader: rank " + std::to_string(o.rank) + " is not in [0, " +
                                std::to_string(o.num_ranks) + ")");
  if (o.batch_size < o.num_ranks)
    throw std::invalid_argument("Loader: batch_size " + std::to_string(o.batch_size) +
                                " leaves some of the " + std::to_string(o.num_ranks) +
                                " ranks without rows");
  if (o.prefetch < 0)
    throw std::invalid_argument("Loader: prefetch must be >= 0, got " + std::to_string(o.prefetch));
  const int64_t n = dataset_.size();
  steps_per_epoch_ =
      o.remainder == Remainder::drop ? n / o.batch_size : (n + o.batch_size - 1) / o.batch_size;
  if (steps_per_epoch_ == 0)
    throw std::invalid_argument("Loader: batch_size " + std::to_string(o.batch_size) +
                                " exceeds the " + std::to_string(n) +
                                " rows with Remainder::drop: no batch in an epoch");
  if (o.prefetch > 0) start_worker(0);
}

Loader::~Loader() { stop_worker(); }

std::vector<int64_t> Loader::order(int64_t epoch) const {
  const int64_t n = dataset_.size();
  std::vector<int64_t> idx(static_cast<size_t>(n));
  if (!options_.shuffle) {
    std::iota(idx.begin(), idx.end(), 0);
    return idx;
  }
  Array perm = random::permutation(random::fold_in(key_, static_cast<uint32_t>(epoch)), n);
  const int32_t* p = perm.data<int32_t>();
  for (int64_t i = 0; i < n; ++i) idx[static_cast<size_t>(i)] = p[i];
  return idx;
}

Batch Loader::at(int64_t step) const {
  if (step < 0) throw std::invalid_argument("Loader::at: step " + std::to_string(step) + " < 0");
  const auto& o = options_;
  Batch b;
  b.step = step;
  b.epoch = step / steps_per_epoch_;
  b.index = step % steps_per_epoch_;
  std::shared_ptr<const std::vector<int64_t>> ord;
  {
    std::lock_guard<std::mutex> lock(order_mutex_);
    if (order_epoch_ != b.epoch) {
      order_ = std::make_shared<const std::vector<int64_t>>(order(b.epoch));
      order_epoch_ = b.epoch;
    }
    ord = order_;
  }
  const int64_t n = dataset_.size(), begin = b.index * o.batch_size;
  const int64_t real = std::min(o.batch_size, n - begin);  // rows of data in the global batch
  const int64_t global = o.remainder == Remainder::keep ? real : o.batch_size;
  // This rank's part [lo, hi) of the global batch.
  const int64_t base = global / o.num_ranks, extra = global % o.num_ranks;
  const int64_t lo = o.rank * base + std::min<int64_t>(o.rank, extra);
  const int64_t hi = lo + base + (o.rank < extra ? 1 : 0);
  std::vector<int64_t> rows(static_cast<size_t>(hi - lo));
  b.mask = Array::empty({hi - lo}, DType::float32);
  float* mask = b.mask.mutable_data<float>();
  for (int64_t r = lo; r < hi; ++r) {
    bool pad = r >= real;  // Remainder::pad: repeat the batch's first rows
    rows[static_cast<size_t>(r - lo)] = (*ord)[static_cast<size_t>(begin + (pad ? r % real : r))];
    mask[r - lo] = pad ? 0.f : 1.f;
  }
  b.data = dataset_.gather(rows);
  if (o.transform)
    b.data = o.transform(
        b.data, random::fold_in(random::fold_in(key_, 0x7fffffffu), static_cast<uint32_t>(step)));
  return b;
}

void Loader::start_worker(int64_t step) {
  stop_ = false;
  error_ = nullptr;
  ready_.clear();
  worker_ = std::thread([this, step] {
    for (int64_t s = step;; ++s) {
      {
        std::unique_lock<std::mutex> lock(m_);
        cv_.wait(lock,
                 [&] { return stop_ || static_cast<int>(ready_.size()) < options_.prefetch; });
        if (stop_) return;
      }
      try {
        Batch b = at(s);
        std::lock_guard<std::mutex> lock(m_);
        ready_.push_back(std::move(b));
      } catch (...) {
        std::lock_guard<std::mutex> lock(m_);
        error_ = std::current_exception();
        cv_.notify_all();
        return;
      }
      cv_.notify_all();
    }
  });
}

void Loader::stop_worker() {
  if (!worker_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(m_);
    stop_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

void Loader::seek(int64_t step) {
  if (step < 0) throw std::invalid_argument("Loader::seek: step " + std::to_string(step) + " < 0");
  stop_worker();
  next_step_ = step;
  if (options_.prefetch > 0) start_worker(step);
}

Batch Loader::next() {
  if (options_.prefetch == 0) return at(next_step_++);
  std::unique_lock<std::mutex> lock(m_);
  if (!ready_.empty()) ++hits_;
  cv_.wait(lock, [&] { return !ready_.empty() || error_; });
  if (ready_.empty()) std::rethrow_exception(error_);
  Batch b = std::move(ready_.front());
  ready_.pop_front();
  lock.unlock();
  cv_.notify_all();
  ++next_step_;
  return b;
}

}  // namespace flaxpp::data
