// Smoke test of the training examples (examples/train_*.cpp): each binary runs a few steps of a
// tiny configuration, stops (--stop-at, as a time limit would), resumes from its checkpoint and
// must end with exactly the parameters of an uninterrupted run. Also checks --help, the files a
// run writes (metrics.csv rows, checkpoints, params.json) and the --resume error without a
// checkpoint. Needs the Debian packages `fortunes` and `dataset-fashion-mnist` (scripts/test
// installs them); no network. Each run takes a second or two.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <sys/wait.h>

#include "serialization/serialization.hpp"
#include "tests/examples/example_runner.hpp"
#include "training/train_state.hpp"

using namespace flaxpp;
namespace fs = std::filesystem;

namespace {

const fs::path kFortunes = "/usr/share/games/fortunes";
const fs::path kFashion = "/usr/share/datasets/fashion-mnist";

using test::read_file;
using test::RunResult;

fs::path fresh_dir(const std::string& name) { return test::fresh_dir("examples", name); }

// Runs `binary args` with its output captured in `log`.
RunResult run(const std::string& binary, const std::string& args, const fs::path& log) {
  return test::shell("'" + test::example(binary).string() + "' " + args, log);
}

void require_data(const fs::path& path, const char* package) {
  REQUIRE_MESSAGE(fs::exists(path), path.string()
                                        << " is missing: install the Debian package `" << package
                                        << "` (apt-get install " << package
                                        << "; scripts/test installs it via scripts/lib.sh)");
}

// The first column (step) of each data row of metrics.csv.
std::vector<long> csv_steps(const fs::path& csv) {
  std::ifstream in(csv);
  std::string line;
  std::getline(in, line);  // header
  std::vector<long> steps;
  while (std::getline(in, line)) steps.push_back(std::stol(line.substr(0, line.find(','))));
  return steps;
}

std::vector<long> strictly_increasing(std::vector<long> v) {
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] <= v[i - 1]) return {};
  return v;
}

// Stop at `stop` of `total`, resume, compare with an uninterrupted run; return the resumed dir.
fs::path check_resume(const std::string& binary, const std::string& args, int total, int stop) {
  fs::path split = fresh_dir(binary + "_split"), whole = fresh_dir(binary + "_whole");
  std::string steps = " --steps " + std::to_string(total) + " ";

  auto first = run(
      binary,
      args + steps + "--stop-at " + std::to_string(stop) + " --out-dir '" + split.string() + "'",
      split / "first.log");
  INFO(first.output);
  REQUIRE(first.exit_code == 0);
  CHECK(first.output.find("stopped at step " + std::to_string(stop)) != std::string::npos);
  CHECK(fs::exists(split / "metrics.csv"));
  CHECK(fs::exists(split / "params.json"));
  CHECK(training::checkpoint_steps(split / "ckpt").back() == stop);
  CHECK(csv_steps(split / "metrics.csv").back() == stop);

  auto second = run(binary, args + steps + "--resume --out-dir '" + split.string() + "'",
                    split / "second.log");
  INFO(second.output);
  REQUIRE(second.exit_code == 0);
  CHECK(second.output.find("(step " + std::to_string(stop) + ")") !=
        std::string::npos);  // "resumed from ... (step N)"
  CHECK(training::checkpoint_steps(split / "ckpt").back() == total);
  auto steps_seen = csv_steps(split / "metrics.csv");
  CHECK(!strictly_increasing(steps_seen)
             .empty());  // the earlier rows kept once, then the resumed ones
  CHECK(steps_seen.back() == total);

  auto uninterrupted =
      run(binary, args + steps + "--out-dir '" + whole.string() + "'", whole / "run.log");
  INFO(uninterrupted.output);
  REQUIRE(uninterrupted.exit_code == 0);
  CHECK(steps_seen == csv_steps(whole / "metrics.csv"));
  // Same batches, same rng, same optimizer state: the resumed run ends bit-for-bit where the
  // uninterrupted one does.
  CHECK(read_file(split / "params.json") == read_file(whole / "params.json"));
  Tree params = load(split / "params.json");
  CHECK(params.contains("params"));
  return split;
}

}  // namespace

TEST_CASE("train_charlm: help, a short run, resume bit-for-bit, sampling") {
  require_data(kFortunes, "fortunes");
  fs::path tmp = fresh_dir("charlm_misc");
  auto help = run("train_charlm", "--help", tmp / "help.log");
  CHECK(help.exit_code == 0);
  CHECK(help.output.find("--time-limit") != std::string::npos);
  CHECK(help.output.find("--top-k") != std::string::npos);

  auto no_ckpt =
      run("train_charlm", "--resume --out-dir '" + tmp.string() + "'", tmp / "noresume.log");
  CHECK(no_ckpt.exit_code != 0);
  CHECK(no_ckpt.output.find("--resume: no checkpoint") != std::string::npos);

  const std::string tiny =
      "--dim 16 --depth 1 --seq-len 16 --batch 4 --threads 1 --log-every 2 --eval-every 4 "
      "--eval-windows 4 "
      "--final-eval-windows 8 --ckpt-every 4 --sample-len 12 --sample-prompt Hello";
  fs::path dir = check_resume("train_charlm", tiny, /*total=*/8, /*stop=*/6);
  std::string sample = read_file(dir / "sample.txt");
  CHECK(sample.rfind("Hello", 0) == 0);
  CHECK(sample.size() >= 5 + 12);
  CHECK(fs::exists(dir / "vocab.json"));
  // The pipeline's prefetch thread changes no value: --prefetch 0 ends with the same params.
  fs::path nopre = fresh_dir("charlm_noprefetch");
  auto r0 = run("train_charlm", tiny + " --steps 8 --prefetch 0 --out-dir '" + nopre.string() + "'",
                nopre / "run.log");
  REQUIRE(r0.exit_code == 0);
  CHECK(read_file(nopre / "params.json") == read_file(dir / "params.json"));
  std::string header = read_file(dir / "metrics.csv").substr(0, 50);
  CHECK(header.rfind("step,time,train_loss,val_bpc,lr,tokens_per_s", 0) == 0);
}

TEST_CASE(
    "train_charlm: --optimizer, --schedule, --accumulate resume bit-for-bit mid-accumulation") {
  require_data(kFortunes, "fortunes");
  const std::string tiny =
      "--dim 16 --depth 1 --seq-len 16 --batch 4 --threads 1 --log-every 2 --eval-every 4 "
      "--eval-windows 4 --final-eval-windows 8 --ckpt-every 4 --sample-len 0 "
      "--optimizer adafactor --schedule exponential --accumulate 3";
  // Stopped at step 8, two batches into an update: the checkpoint holds MultiSteps'
  // partly accumulated gradient.
  check_resume("train_charlm", tiny, /*total=*/12, /*stop=*/8);
  fs::path tmp = fresh_dir("charlm_badopt");
  auto bad =
      run("train_charlm", "--optimizer adamx --out-dir '" + tmp.string() + "'", tmp / "bad.log");
  CHECK(bad.exit_code != 0);
  CHECK(bad.output.find("--optimizer") != std::string::npos);
}

TEST_CASE(
    "train_fashion_mnist: --augment with lion, onecycle and --accumulate resume bit-for-bit") {
  require_data(kFashion / "train-images-idx3-ubyte.gz", "dataset-fashion-mnist");
  const std::string tiny =
      "--train-limit 96 --test-limit 64 --batch 16 --dim 8 --depth 1 --patch-size 7 --ff-mult 2 "
      "--threads 1 --log-every 2 --ckpt-every 4 --augment --optimizer lion --lr 1e-3 "
      "--schedule onecycle --accumulate 3 --prefetch 3";
  check_resume("train_fashion_mnist", tiny, /*total=*/12, /*stop=*/8);  // mid-accumulation
}

TEST_CASE("train_fashion_mnist: a short run on a subset, resume bit-for-bit") {
  require_data(kFashion / "train-images-idx3-ubyte.gz", "dataset-fashion-mnist");
  require_data(kFashion / "t10k-labels-idx1-ubyte.gz", "dataset-fashion-mnist");
  // 96 training images in batches of 16: 6 steps per epoch, 2 epochs; stop mid-epoch 2.
  const std::string tiny =
      "--train-limit 96 --test-limit 64 --batch 16 --dim 8 --depth 1 --patch-size 7 --ff-mult 2 "
      "--survival-prob 0.5 --threads 1 --log-every 2 --ckpt-every 4";
  fs::path dir = check_resume("train_fashion_mnist", tiny, /*total=*/12, /*stop=*/8);
  std::string csv = read_file(dir / "metrics.csv");
  CHECK(csv.rfind("step,epoch,time,train_loss,train_acc,test_loss,test_acc,lr,images_per_s", 0) ==
        0);
  CHECK(csv.find("\n6,1,") != std::string::npos);  // the end of epoch 1 has its own row

  fs::path tmp = fresh_dir("fashion_misc");
  auto bad =
      run("train_fashion_mnist",
          "--data-dir '" + tmp.string() + "' --out-dir '" + tmp.string() + "'", tmp / "bad.log");
  CHECK(bad.exit_code != 0);
  CHECK(bad.output.find("dataset-fashion-mnist") !=
        std::string::npos);  // names the package to install
}
