// metrics.csv for the examples' training loops, and its PNG plot through gnuplot.
//
//   examples::MetricsCsv csv(out / "metrics.csv", {"step", "time", "train_loss", "val_bpc"}, resume_step);
//   csv.row({step, seconds, loss, std::nullopt});       // an empty cell for "not measured"
//   examples::plot_png(out / "metrics.csv", out / "loss.png", "train_charlm",
//                      {{.column = "train_loss", .title = "train", .scale = 1 / std::log(2.0)}});
//
// The first column is the step. A fresh run truncates the file; a resumed run (resume_step set)
// keeps the rows of the earlier run up to and including that step and appends after them, so the
// file reads as one run. Rows are flushed as they are written (a killed run keeps its metrics).
//
// plot_png writes a self-contained gnuplot script (the points inline) next to the PNG (loss.gp
// beside loss.png, so the plot can be redrawn or restyled by hand) and runs `gnuplot` on it, its
// warnings silenced. Without gnuplot on PATH it prints "gnuplot not found: skipping plot" and
// returns false; the training run carries on.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace examples {

namespace fs = std::filesystem;

// Splits one CSV line on commas (the examples never quote: every cell is a number or empty).
inline std::vector<std::string> split_csv_line(const std::string& line) {
  std::vector<std::string> cells;
  std::string cell;
  std::istringstream in(line);
  while (std::getline(in, cell, ',')) cells.push_back(cell);
  if (!line.empty() && line.back() == ',') cells.emplace_back();
  return cells;
}

class MetricsCsv {
 public:
  using Cell = std::optional<double>;

  MetricsCsv(fs::path path, std::vector<std::string> columns,
             std::optional<int64_t> resume_step = std::nullopt)
      : path_(std::move(path)), columns_(std::move(columns)) {
    std::string header = join(columns_);
    std::vector<std::string> kept;
    if (resume_step) {
      std::ifstream in(path_);
      std::string line;
      if (std::getline(in, line) && line == header) {
        while (std::getline(in, line)) {
          auto cells = split_csv_line(line);
          if (cells.empty() || cells[0].empty()) continue;
          if (std::stoll(cells[0]) > *resume_step) break;
          kept.push_back(line);
          last_row_ = cells;
        }
      } else if (in) {
        std::cerr << "note: " << path_.string() << " has other columns; starting it afresh\n";
      }
    }
    if (!path_.parent_path().empty()) fs::create_directories(path_.parent_path());
    out_.open(path_, std::ios::trunc);
    if (!out_) throw std::runtime_error("cannot write " + path_.string());
    out_ << header << '\n';
    for (const auto& l : kept) out_ << l << '\n';
    out_.flush();
  }

  // One row, one cell per column: std::nullopt (or NaN) writes an empty cell.
  void row(const std::vector<Cell>& cells) {
    if (cells.size() != columns_.size())
      throw std::logic_error("MetricsCsv::row: " + std::to_string(cells.size()) + " cells for " +
                             std::to_string(columns_.size()) + " columns");
    last_row_.clear();
    for (size_t i = 0; i < cells.size(); ++i) {
      std::string text;
      if (cells[i] && std::isfinite(*cells[i])) {
        char buf[40];
        std::snprintf(buf, sizeof buf, i == 0 ? "%.0f" : "%.6g", *cells[i]);
        text = buf;
      }
      out_ << (i ? "," : "") << text;
      last_row_.push_back(text);
    }
    out_ << '\n';
    out_.flush();
  }

  // The value of `column` in the last row kept or written (std::nullopt if none or empty).
  Cell last(const std::string& column) const {
    for (size_t i = 0; i < columns_.size() && i < last_row_.size(); ++i)
      if (columns_[i] == column && !last_row_[i].empty()) return std::stod(last_row_[i]);
    return std::nullopt;
  }

  const fs::path& path() const { return path_; }

 private:
  static std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + v[i];
    return s;
  }
  fs::path path_;
  std::vector<std::string> columns_;
  std::vector<std::string> last_row_;
  std::ofstream out_;
};

// The full path of `program` on PATH, or empty.
inline fs::path find_on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  if (!path) return {};
  std::istringstream dirs(path);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) continue;
    fs::path p = fs::path(dir) / program;
    std::error_code ec;
    if (fs::is_regular_file(p, ec) && access(p.c_str(), X_OK) == 0) return p;
  }
  return {};
}

struct PlotSeries {
  std::string column;   // a CSV column name
  std::string title;    // legend entry
  double scale = 1.0;   // plotted value = scale * column (e.g. 1/ln 2: nats -> bits)
  bool y2 = false;      // right-hand axis
  bool points = false;  // linespoints (sparse series such as evaluations) instead of lines
};

// Renders `csv` (x = its first column, the step) to `png`. Returns false (with a note on stderr) when
// gnuplot is missing or fails.
inline bool plot_png(const fs::path& csv, const fs::path& png, const std::string& title,
                     const std::string& ylabel, const std::vector<PlotSeries>& series,
                     const std::string& y2label = "") {
  fs::path gnuplot = find_on_path("gnuplot");
  if (gnuplot.empty()) {
    std::cerr << "gnuplot not found: skipping plot (apt-get install gnuplot-nox)\n";
    return false;
  }
  // The points of each series (rows where its cell is empty are left out), as datablocks: a
  // gnuplot expression on an empty CSV cell gives NaN, which would break a sparse line apart.
  std::ifstream in(csv);
  std::string line;
  std::getline(in, line);
  std::vector<std::string> header = split_csv_line(line);
  std::vector<size_t> col(series.size());
  for (size_t i = 0; i < series.size(); ++i) {
    col[i] = std::find(header.begin(), header.end(), series[i].column) - header.begin();
    if (col[i] == header.size())
      throw std::logic_error("plot_png: no column '" + series[i].column + "' in " + csv.string());
  }
  std::vector<std::string> blocks(series.size());
  while (std::getline(in, line)) {
    auto cells = split_csv_line(line);
    for (size_t i = 0; i < series.size(); ++i) {
      if (col[i] >= cells.size() || cells[col[i]].empty() || cells[0].empty()) continue;
      char buf[80];
      std::snprintf(buf, sizeof buf, "%s %.9g\n", cells[0].c_str(),
                    series[i].scale * std::stod(cells[col[i]]));
      blocks[i] += buf;
    }
  }
  fs::path script = fs::path(png).replace_extension(".gp");
  {
    std::ofstream gp(script, std::ios::trunc);
    gp << "# Redraw with: gnuplot " << script.filename().string()
       << " (in this directory); data from " << csv.filename().string() << "\n"
       << "set terminal pngcairo size 900,540 font ',10'\n"
       << "set output '" << png.filename().string() << "'\n"
       << "set title '" << title << "' noenhanced\n"
       << "set xlabel 'step'\nset ylabel '" << ylabel << "'\nset grid\nset key top center\n";
    if (!y2label.empty()) gp << "set y2label '" << y2label << "'\nset y2tics\nset ytics nomirror\n";
    for (size_t i = 0; i < series.size(); ++i)
      gp << "$s" << i << " << EOD\n" << blocks[i] << "EOD\n";
    gp << "plot ";
    for (size_t i = 0; i < series.size(); ++i) {
      const auto& s = series[i];
      gp << (i ? ", \\\n     " : "") << "$s" << i << " using 1:2 with "
         << (s.points ? "linespoints pt 7 ps 0.6" : "lines") << " lw 2"
         << " title '" << s.title << "' noenhanced" << (s.y2 ? " axes x1y2" : "");
    }
    gp << '\n';
  }
  fs::path dir = fs::absolute(script).parent_path();
  std::string cmd = "cd '" + dir.string() + "' && '" + gnuplot.string() + "' '" +
                    script.filename().string() + "' 2>/dev/null";
  int rc = std::system(cmd.c_str());
  if (rc != 0) {
    std::cerr << "gnuplot failed (exit status " << rc << "): no plot; run `gnuplot "
              << script.filename().string() << "` in " << dir.string() << " to see why\n";
    return false;
  }
  return true;
}

}  // namespace examples
