#include "core/parallel.hpp"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace flaxpp {

namespace {

thread_local bool t_in_parallel = false;

// Handing work to a worker and waiting for it costs two futex calls (~10-30 us) when the other
// side sleeps, which is more than a whole small kernel. So both sides first spin for a short
// while (kSpin, FLAXPP_SPIN_US) on atomics before sleeping: back-to-back kernels, as in a forward
// pass, hand over in well under a microsecond, and an idle pool still goes to sleep. The sleep
// handshake is Dekker-style (sequentially consistent counter of sleepers vs generation), so a
// wake-up is never lost.
class Pool {
 public:
  static Pool& get() {
    static Pool pool;
    return pool;
  }

  int threads() const { return threads_; }
  void set_threads(int n) {
    std::lock_guard<std::mutex> lock(run_mutex_);
    stop_workers();
    threads_ = std::max(1, n);
  }

  void run(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    int64_t chunks =
        std::min<int64_t>(threads_, std::max<int64_t>(1, n / std::max<int64_t>(1, grain)));
    if (chunks <= 1 || t_in_parallel) {
      fn(0, n);
      return;
    }
    std::lock_guard<std::mutex> run_lock(run_mutex_);  // one parallel region at a time
    start_workers();
    fn_ = &fn;
    n_ = n;
    chunks_ = chunks;
    pending_.store(threads_ - 1);  // every worker acknowledges, so none lags a generation behind
    generation_.fetch_add(1);      // publishes fn_, n_, chunks_ (seq_cst)
    if (sleepers_.load() > 0) {
      std::lock_guard<std::mutex> lock(m_);
      cv_.notify_all();
    }
    t_in_parallel = true;
    fn(0, bound(1));
    t_in_parallel = false;
    if (!spin_until([&] { return pending_.load(std::memory_order_acquire) == 0; })) {
      std::unique_lock<std::mutex> lock(m_);
      main_sleeping_.store(true);
      done_cv_.wait(lock, [&] { return pending_.load() == 0; });
      main_sleeping_.store(false);
    }
    fn_ = nullptr;
  }

 private:
  Pool() {
    int n = static_cast<int>(std::thread::hardware_concurrency());
    if (const char* env = std::getenv("FLAXPP_NUM_THREADS")) n = std::atoi(env);
    threads_ = std::max(1, n);
    if (const char* env = std::getenv("FLAXPP_SPIN_US"))
      spin_ = std::chrono::microseconds(std::max(0, std::atoi(env)));
  }
  ~Pool() { stop_workers(); }

  int64_t bound(int64_t chunk) const { return n_ * chunk / chunks_; }

  // Polls `done` for up to spin_: a few microseconds of pause instructions, then sched_yield, so
  // that on a busy machine the spinning thread hands its core to whoever the other side waits for.
  template <class Pred>
  bool spin_until(Pred done) const {
    if (done()) return true;
    auto until = std::chrono::steady_clock::now() + spin_;
    for (int i = 0;; ++i) {
      for (int j = 0; j < 64; ++j) {
        if (done()) return true;
        pause();
      }
      if (i >= 16) sched_yield();
      if (std::chrono::steady_clock::now() >= until) return done();
    }
  }
  static void pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }

  void start_workers() {
    if (!workers_.empty()) return;
    stop_.store(false);
    uint64_t now = generation_.load();  // before run() bumps it, so the first job is not missed
    for (int i = 1; i < threads_; ++i) workers_.emplace_back([this, i, now] { loop(i, now); });
  }
  void stop_workers() {
    stop_.store(true);
    {
      std::lock_guard<std::mutex> lock(m_);
      cv_.notify_all();
    }
    for (auto& w : workers_) w.join();
    workers_.clear();
  }
  void loop(int id, uint64_t seen) {
    t_in_parallel = true;
    for (;;) {
      auto fresh = [&] {
        return stop_.load() || generation_.load(std::memory_order_acquire) != seen;
      };
      if (!spin_until(fresh)) {
        std::unique_lock<std::mutex> lock(m_);
        sleepers_.fetch_add(1);
        cv_.wait(lock, fresh);
        sleepers_.fetch_sub(1);
      }
      if (stop_.load()) return;
      seen = generation_.load();
      if (id < chunks_) (*fn_)(bound(id), bound(id + 1));
      if (pending_.fetch_sub(1) == 1 && main_sleeping_.load()) {
        std::lock_guard<std::mutex> lock(m_);
        done_cv_.notify_one();
      }
    }
  }

  int threads_ = 1;
  std::chrono::microseconds spin_{100};
  std::vector<std::thread> workers_;
  std::mutex run_mutex_, m_;
  std::condition_variable cv_, done_cv_;
  // Written by run() before generation_ is bumped, read by workers after they see the bump.
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, chunks_ = 0;
  std::atomic<int64_t> pending_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false}, main_sleeping_{false};
};

}  // namespace

int num_threads() { return Pool::get().threads(); }
void set_num_threads(int n) { Pool::get().set_threads(n); }
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  Pool::get().run(n, grain, fn);
}

}  // namespace flaxpp
