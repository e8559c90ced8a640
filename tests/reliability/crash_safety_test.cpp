// Crash safety of checkpoint files: a forked child saves a ~4 MB tree to the same path over and
// over and the parent SIGKILLs it at random points. After every kill the file at that path loads
// and is exactly one of the versions written (never torn, never older than one seen before), and
// the temporary files the killed writes leave behind break neither load() nor checkpoint_steps()
// / restore_checkpoint().
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "optax/optax.hpp"
#include "serialization/serialization.hpp"
#include "training/train_state.hpp"

using namespace flaxpp;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int64_t kWords = 1 << 20;  // 4 MB of float32 per version

// Version `id`: every value is determined by id, and one leaf's length varies with it, so a torn
// or mixed file cannot pass verify().
float value_at(int32_t id, int64_t i) { return static_cast<float>((int64_t{id} * 7 + i) % 65521); }
Tree params_version(int32_t id) {
  Array w = Array::empty({kWords}, DType::float32);
  float* p = w.mutable_data<float>();
  for (int64_t i = 0; i < kWords; ++i) p[i] = value_at(id, i);
  std::vector<float> tail(static_cast<size_t>(id % 7 + 1), static_cast<float>(id % 1000));
  return Tree{{"w", w}, {"tail", Array::from({static_cast<int64_t>(tail.size())}, tail)}};
}
Tree version(int32_t id) { return Tree{{"id", Array(id)}, {"params", params_version(id)}}; }

// The id of a loaded version, after checking every value against it (-1 if inconsistent).
int32_t verify_params(const Tree& params, int32_t id) {
  const Array& w = params["w"].array();
  if (w.shape() != Shape{kWords}) return -1;
  const float* p = w.data<float>();
  for (int64_t i = 0; i < kWords; ++i)
    if (p[i] != value_at(id, i)) return -1;
  const Array& tail = params["tail"].array();
  if (tail.size() != id % 7 + 1) return -1;
  for (float v : tail.to_float())
    if (v != static_cast<float>(id % 1000)) return -1;
  return id;
}
int32_t verify(const Tree& t) {
  return verify_params(t["params"], t["id"].array().item<int32_t>());
}

fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::path(FLAXPP_BINARY_DIR) / "test_tmp" / "reliability" / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Temporary files left by killed saves: save() names them ".<file>.tmp-<pid>-<random>".
std::vector<fs::path> leftovers(const fs::path& dir) {
  std::vector<fs::path> r;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp-") != std::string::npos) r.push_back(e.path());
  return r;
}

// Forks a child that runs `body(k)` for k = 0, 1, ... until it is killed, writing one byte to
// `done_fd` after each body that returns (pass -1 for no signal). The child dies with the parent
// and never returns into the test runner.
template <class F>
pid_t spawn_writer(F body, int done_fd = -1) {
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    try {
      for (int32_t k = 0;; ++k) {
        body(k);
        if (done_fd >= 0) {
          const char byte = 1;
          if (::write(done_fd, &byte, 1) != 1) ::_exit(4);
        }
      }
    } catch (...) {
      ::_exit(3);
    }
  }
  return pid;
}

// Blocks until the child behind `read_fd` reports one finished body.
void wait_for_one(int read_fd) {
  char byte = 0;
  REQUIRE(::read(read_fd, &byte, 1) == 1);
}

void kill_and_reap(pid_t pid) {
  ::kill(pid, SIGKILL);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  // The child must have been killed mid-loop, not have died on an exception of its own.
  REQUIRE_MESSAGE((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL),
                  "writer exited with status " << status);
}

}  // namespace

TEST_CASE("save() killed at random points never leaves a torn file") {
  auto dir = fresh_dir("crash_save");
  fs::path path = dir / "model.msgpack";
  save(path, version(0));

  // Kill delays span a few save durations, so kills land before, inside and between saves.
  auto t0 = Clock::now();
  for (int i = 1; i <= 3; ++i) save(path, version(i));
  auto per_save = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0) / 3;
  MESSAGE("one 4 MB save takes " << per_save.count() / 1000.0 << " ms");

  std::mt19937 gen(20240611);  // a local, seeded engine: the kill points are reproducible
  std::uniform_int_distribution<int64_t> delay(0, 3 * per_save.count() + 2000);
  const int iterations = 100;
  int32_t last = 3;
  int changed = 0, leftover_seen = 0;
  auto start = Clock::now();
  for (int it = 1; it <= iterations; ++it) {
    const int32_t base = it * 100000;
    // Odd iterations kill at a random time after fork (on a loaded machine the child may not
    // have finished one save by then); even ones wait for the child's first finished save and
    // then kill at a random time, so some kills always land between and inside later saves.
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    pid_t pid = spawn_writer([&](int32_t k) { save(path, version(base + k)); }, fds[1]);
    if (it % 2 == 0) wait_for_one(fds[0]);
    std::this_thread::sleep_for(std::chrono::microseconds(delay(gen)));
    kill_and_reap(pid);
    ::close(fds[0]);
    ::close(fds[1]);

    auto temps = leftovers(dir);
    leftover_seen += temps.empty() ? 0 : 1;
    Tree t = load(path);  // with the leftovers still there
    int32_t id = verify(t);
    REQUIRE_MESSAGE(id >= 0, "iteration " << it << ": the file holds no consistent version");
    // One of the versions written: the previous one, or one this child finished.
    REQUIRE_MESSAGE((id == last || (id >= base && id < base + 100000)),
                    "iteration " << it << ": unexpected id " << id);
    changed += id != last;
    last = id;
    for (const auto& p : temps) fs::remove(p);  // they are 4 MB each
  }
  MESSAGE(iterations << " kills in " << std::chrono::duration<double>(Clock::now() - start).count()
                     << " s: " << changed << " saw a new version, " << leftover_seen
                     << " left temporary files");
  CHECK(changed >= iterations / 2);  // every even iteration finished a save before its kill
}

TEST_CASE("save_checkpoint (keep = 2) killed at random points: restore_checkpoint always works") {
  auto dir = fresh_dir("crash_checkpoint");
  auto target = training::TrainState::create(params_version(0), optax::sgd(0.1));
  // Restoring validates shapes against `target`, so every step uses a version id that is a
  // multiple of 7 (same tail length as version 0): id = 7 * step.
  auto state_at = [&](int32_t step) {
    training::TrainState s = target;
    s.params = params_version(7 * step);
    s.step = step;
    return s;
  };
  training::save_checkpoint(dir, state_at(1), 1, 2);
  auto t0 = Clock::now();
  training::save_checkpoint(dir, state_at(2), 2, 2);
  auto per_save = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0);

  std::mt19937 gen(7);
  std::uniform_int_distribution<int64_t> delay(0, 3 * per_save.count() + 2000);
  const int iterations = 40;
  int32_t last = 2;
  size_t max_leftovers = 0;
  for (int it = 1; it <= iterations; ++it) {
    const int32_t first = last + 1;
    // As above: even iterations kill only after one save finished.
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    pid_t pid = spawn_writer(
        [&](int32_t k) { training::save_checkpoint(dir, state_at(first + k), first + k, 2); },
        fds[1]);
    if (it % 2 == 0) wait_for_one(fds[0]);
    std::this_thread::sleep_for(std::chrono::microseconds(delay(gen)));
    kill_and_reap(pid);
    ::close(fds[0]);
    ::close(fds[1]);

    // Steps listed are real checkpoints only; the newest restores and is consistent.
    auto steps = training::checkpoint_steps(dir);
    REQUIRE(!steps.empty());
    // keep = 2, plus one for each save killed between its rename and the removal of older
    // files; the next completed save removes them (checked after the loop).
    auto temps = leftovers(dir);
    max_leftovers = std::max(max_leftovers, temps.size());
    training::TrainState s = training::restore_checkpoint(dir, target);
    REQUIRE(s.step == steps.back());
    REQUIRE(s.step >= last);
    REQUIRE_MESSAGE(verify_params(s.params, static_cast<int32_t>(7 * s.step)) >= 0,
                    "step " << s.step << " is torn");
    last = static_cast<int32_t>(s.step);
    if (temps.size() > 3)
      for (const auto& p : temps) fs::remove(p);
  }
  MESSAGE("newest step after " << iterations << " kills: " << last << "; at most " << max_leftovers
                               << " temporary files lay beside the checkpoints");
  CHECK(last >= 2 + iterations / 2);  // each even iteration finished at least one save

  // A save that completes leaves exactly `keep` checkpoints.
  training::save_checkpoint(dir, state_at(last + 1), last + 1, 2);
  CHECK(training::checkpoint_steps(dir).size() == 2);
  last += 1;

  // Stray files that look almost like checkpoints are ignored too.
  std::ofstream(dir / ".checkpoint_999.msgpack.tmp-1-deadbeef", std::ios::binary) << "\x82\xa4step";
  std::ofstream(dir / "checkpoint_999.msgpack.tmp", std::ios::binary) << "junk";
  std::ofstream(dir / "checkpoint_x1.msgpack", std::ios::binary) << "junk";
  auto steps = training::checkpoint_steps(dir);
  CHECK(steps.back() == last);
  CHECK(training::restore_checkpoint(dir, target).step == last);
}
