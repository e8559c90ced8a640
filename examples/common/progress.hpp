// A one-line training progress bar on stderr, for the examples' training loops.
//
//   examples::ProgressBar bar(/*total=*/2000, /*plain_every=*/50);
//   bar.update(step, "loss 2.143", /*rate=*/12300, "tok/s", /*eta_seconds=*/192);
//   bar.message("eval: val 2.41 bits/char");   // a line of its own; the bar is redrawn after it
//   bar.finish();
//
// On a terminal the line is redrawn in place with '\r' (at most ~10 times a second); otherwise
// (a log file, ctest, CI) a plain line is printed every `plain_every` steps and at the last step.
// A bar constructed with enabled = false prints nothing (the ranks but 0 of a --distributed run).
// Output: "[#######.............]  700/2000  loss 2.143  12.3k tok/s  ETA 3m12s".
#pragma once

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>

namespace examples {

// 3725 -> "1h02m05s", 192 -> "3m12s", 7.4 -> "7s"; "?" when unknown (infinite or negative).
inline std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  auto s = static_cast<int64_t>(std::llround(seconds));
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm%02llds", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  else if (s >= 60)
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(s));
  return buf;
}

// 12345 -> "12.3k", 1.5e6 -> "1.50M", 87 -> "87.0".
inline std::string format_rate(double r) {
  char buf[32];
  if (r >= 1e6)
    std::snprintf(buf, sizeof buf, "%.2fM", r / 1e6);
  else if (r >= 1e3)
    std::snprintf(buf, sizeof buf, "%.1fk", r / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.1f", r);
  return buf;
}

class ProgressBar {
 public:
  ProgressBar(int64_t total, int64_t plain_every, bool enabled = true)
      : total_(total), every_(plain_every > 0 ? plain_every : 1), enabled_(enabled) {
    tty_ = isatty(fileno(stderr)) != 0;
  }
  ~ProgressBar() { finish(); }
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  bool is_tty() const { return tty_; }

  void update(int64_t step, const std::string& metrics, double rate, const std::string& rate_unit,
              double eta_seconds) {
    if (!enabled_) return;
    std::ostringstream line;
    constexpr int kWidth = 20;
    int filled =
        total_ > 0 ? static_cast<int>(kWidth * std::min<int64_t>(step, total_) / total_) : 0;
    line << '[' << std::string(filled, '#') << std::string(kWidth - filled, '.') << "]  " << step
         << '/' << total_;
    if (!metrics.empty()) line << "  " << metrics;
    if (rate > 0) line << "  " << format_rate(rate) << ' ' << rate_unit;
    line << "  ETA " << format_duration(eta_seconds);
    last_ = line.str();
    if (tty_) {
      auto now = std::chrono::steady_clock::now();
      if (step < total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
      last_draw_ = now;
      std::cerr << "\r\033[K" << last_ << std::flush;
      drawn_ = true;
    } else if (step % every_ == 0 || step == total_) {
      std::cerr << last_ << '\n' << std::flush;
    }
  }

  // Prints a line of its own without garbling the bar.
  void message(const std::string& text) {
    if (!enabled_) return;
    if (tty_ && drawn_) {
      std::cerr << "\r\033[K" << text << '\n' << last_ << std::flush;
    } else {
      std::cerr << text << '\n' << std::flush;
    }
  }

  // Ends the bar's line (terminal only); safe to call more than once.
  void finish() {
    if (tty_ && drawn_) std::cerr << "\r\033[K" << last_ << '\n' << std::flush;
    drawn_ = false;
  }

 private:
  int64_t total_, every_;
  bool enabled_, tty_ = false, drawn_ = false;
  std::string last_;
  std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace examples
