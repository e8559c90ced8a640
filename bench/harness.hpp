// Timing and process helpers for the plain-main benchmarks (gmlp_bench): a timing loop with the
// plan of shared/bench/torch_bench.py, order statistics, a child process whose stdout is read
// back, and what the machine is (CPU model, load, peak RSS, thread pools).
//
//   Plan plan{.warmup = 3, .min_calls = 10, .min_seconds = 0.5};
//   Samples s = time_calls(plan, [&] { model.apply(variables, tokens); });
//   Stats st = stats(s.ms);                 // st.median, st.p25, ... in milliseconds
//   Captured c = run_capture({"/proc/self/exe", "--worker", "ii"});   // c.status, c.out
//
// Quantiles are torch_bench.py's: sorted[min(n - 1, floor(f * n))]; the median is the usual one
// (mean of the two middle values for even n), as Python's statistics.median.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <sys/wait.h>

// OpenBLAS's query (its cblas.h declares it); weak so that another CBLAS still links.
extern "C" int openblas_get_num_threads(void) __attribute__((weak));

namespace bench {

// Warm-up calls, then timed calls until both minimums are reached (at most 10000 calls).
struct Plan {
  int warmup = 1;
  int min_calls = 10;
  double min_seconds = 0;
};

struct Samples {
  std::vector<double> ms;  // timed calls, wall clock
  double first_call_ms = 0;
};

inline Samples time_calls(const Plan& plan, const std::function<void()>& fn) {
  using clock = std::chrono::steady_clock;
  auto ms_since = [](clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(clock::now() - t0).count();
  };
  Samples s;
  for (int w = 0; w < plan.warmup; ++w) {
    auto t0 = clock::now();
    fn();
    if (w == 0) s.first_call_ms = ms_since(t0);
  }
  double total_ms = 0;
  while ((static_cast<int>(s.ms.size()) < plan.min_calls || total_ms < plan.min_seconds * 1e3) &&
         s.ms.size() < 10000) {
    auto t0 = clock::now();
    fn();
    s.ms.push_back(ms_since(t0));
    total_ms += s.ms.back();
  }
  return s;
}

struct Stats {
  double median = 0, min = 0, max = 0, p25 = 0, p75 = 0;
  size_t n = 0;
};

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

inline Stats stats(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.n = v.size();
  auto q = [&](double f) { return v[std::min(s.n - 1, static_cast<size_t>(f * s.n))]; };
  s.median = median(v);
  s.min = v.front();
  s.max = v.back();
  s.p25 = q(0.25);
  s.p75 = q(0.75);
  return s;
}

// getrusage(RUSAGE_SELF).ru_maxrss (KiB on Linux) in MiB: the process's peak so far.
inline double peak_rss_mib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

// OpenBLAS's thread count, or -1 when the BLAS is not OpenBLAS.
inline int openblas_threads() { return openblas_get_num_threads ? openblas_get_num_threads() : -1; }

inline std::string first_line(const std::string& path) {
  std::ifstream f(path);
  std::string line;
  std::getline(f, line);
  return line;
}

// The three load averages of /proc/loadavg (1, 5, 15 minutes).
inline std::vector<double> load_avg() {
  std::vector<double> l(3, 0.0);
  std::sscanf(first_line("/proc/loadavg").c_str(), "%lf %lf %lf", &l[0], &l[1], &l[2]);
  return l;
}

// "model name" of /proc/cpuinfo (what lscpu prints as Model name).
inline std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("model name", 0) == 0) {
      auto p = line.find(':');
      return p == std::string::npos ? line : line.substr(line.find_first_not_of(" \t", p + 1));
    }
  return "unknown";
}

// Local time, ISO 8601 with the UTC offset: 2026-01-31T12:00:00+00:00.
inline std::string iso_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S%z", &tm);
  std::string s(buf);
  if (s.size() >= 5) s.insert(s.size() - 2, ":");
  return s;
}

struct Captured {
  int status = -1;  // exit code; 128 + signal number if killed; -1 if it could not start
  std::string out;  // everything the child wrote to stdout (its stderr is ours)
};

// Runs argv[0] (a path, no PATH search) with argv, waits, and returns its stdout.
inline Captured run_capture(const std::vector<std::string>& argv) {
  Captured c;
  int fd[2];
  if (pipe(fd) != 0) return c;
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid < 0) {
    close(fd[0]);
    close(fd[1]);
    return c;
  }
  if (pid == 0) {
    dup2(fd[1], STDOUT_FILENO);
    close(fd[0]);
    close(fd[1]);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(fd[1]);
  char buf[4096];
  for (ssize_t n; (n = read(fd[0], buf, sizeof buf)) != 0;) {
    if (n > 0)
      c.out.append(buf, static_cast<size_t>(n));
    else if (errno != EINTR)
      break;
  }
  close(fd[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  c.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return c;
}

}  // namespace bench
