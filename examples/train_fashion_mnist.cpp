// train_fashion_mnist: the paper's gMLP for images (models::gMLPVision) on Fashion-MNIST, read
// from Debian's `dataset-fashion-mnist` package.
//
//   build/bin/train_fashion_mnist --time-limit 600 --out-dir out/fashion    # ~89.5% test accuracy
//   build/bin/train_fashion_mnist --resume --out-dir out/fashion       # continues bit-for-bit
//   mpirun -np 2 build/bin/train_fashion_mnist --distributed           # 64 images per rank
//   build/bin/train_fashion_mnist --help
//
// Data: the gzipped idx files in --data-dir (default /usr/share/datasets/fashion-mnist), 60000
// training and 10000 test images of 28x28, pixels scaled to [0, 1] then standardised with the
// training set's mean 0.2860 and std 0.3530. Every epoch visits the training set in the order
// random::permutation(fold_in(shuffle_key, epoch)) in batches of --batch (the remainder is
// dropped); dropout keys (stochastic depth) are fold_in(state.rng, step). So a run is fixed by
// --seed and a resumed run sees the same batches. With --distributed every rank takes its rows of
// that same global batch, its dropout keys are fold_in(fold_in(state.rng, step), rank) (so only
// with --survival-prob 1 does it follow the single-process run exactly), and the test set is
// evaluated in chunks shared out among the ranks, the sums reduced; rank 0 writes every output
// (examples/common/distributed.hpp).
// Model: gMLPVision(image_size 28, --patch-size, 10 classes, --dim, --depth, --ff-mult,
// survival_prob = --survival-prob). Optimizer: clip_by_global_norm -> AdamW (decay on kernels)
// with a linear warmup then cosine decay over all steps (--epochs x steps per epoch, or --steps).
// Test accuracy (deterministic, no stochastic depth) at the end of every epoch and of the run.
//
// Outputs in --out-dir: metrics.csv (step, epoch, time, train_loss, train_acc, test_loss,
// test_acc, lr, images_per_s), loss.png (+ loss.gp), params.json ({"params": ...}), ckpt/.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/cli.hpp"
#include "common/data.hpp"
#include "common/distributed.hpp"
#include "common/metrics.hpp"
#include "common/progress.hpp"
#include "common/training.hpp"
#include "core/autodiff.hpp"
#include "core/ops.hpp"
#include "core/random.hpp"
#include "serialization/serialization.hpp"
#include "models/gmlp.hpp"
#include "nn/losses.hpp"
#include "optax/optax.hpp"
#include "training/train_state.hpp"

using namespace flaxpp;
namespace fs = std::filesystem;

namespace {

struct Config {
  examples::RunFlags run{.steps = 0, .log_every = 50, .ckpt_every = 500, .out_dir = "out/fashion"};
  examples::ModelFlags model{.dim = 64, .depth = 4, .ff_mult = 4};
  examples::OptimizerFlags optim{
      .batch = 128, .lr = 2e-3, .warmup = 200, .weight_decay = 0.05, .clip = 1.0};
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  int64_t epochs = 6;
  int64_t patch_size = 7;
  double survival_prob = 1.0;
  int64_t train_limit = 0;  // use only the first N training / test images (0 = all): smoke tests
  int64_t test_limit = 0;
};

constexpr float kMean = 0.2860f, kStd = 0.3530f;  // Fashion-MNIST training-set pixel statistics

struct Dataset {
  examples::IdxImages images;
  std::vector<uint8_t> labels;
  int64_t size() const { return static_cast<int64_t>(labels.size()); }
};

Dataset load_split(const fs::path& dir, const std::string& prefix, int64_t limit) {
  Dataset d{examples::load_idx_images(dir / (prefix + "-images-idx3-ubyte.gz")),
            examples::load_idx_labels(dir / (prefix + "-labels-idx1-ubyte.gz"))};
  if (d.images.count != d.size())
    throw examples::DataError(dir.string() + ": " + prefix + " has " +
                              std::to_string(d.images.count) + " images but " +
                              std::to_string(d.size()) + " labels");
  if (d.images.rows != 28 || d.images.cols != 28)
    throw examples::DataError(dir.string() + ": " + prefix + " images are " +
                              std::to_string(d.images.rows) + "x" + std::to_string(d.images.cols) +
                              ", expected 28x28");
  if (limit > 0 && limit < d.size()) {
    d.labels.resize(static_cast<size_t>(limit));
    d.images.count = limit;
    d.images.pixels.resize(static_cast<size_t>(limit) * 28 * 28);
  }
  return d;
}

// Images idx[0..n) as normalised float32 (n, 28, 28, 1) and their labels int32 (n,).
std::pair<Array, Array> gather(const Dataset& d, const int32_t* idx, int64_t n) {
  Array x = Array::empty({n, 28, 28, 1}, DType::float32);
  Array y = Array::empty({n}, DType::int32);
  float* xp = x.mutable_data<float>();
  int32_t* yp = y.mutable_data<int32_t>();
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* src = d.images.pixels.data() + static_cast<size_t>(idx[i]) * 784;
    for (int p = 0; p < 784; ++p)
      xp[i * 784 + p] = (static_cast<float>(src[p]) / 255.f - kMean) / kStd;
    yp[i] = d.labels[static_cast<size_t>(idx[i])];
  }
  return {x, y};
}

struct EvalResult {
  double loss = 0, accuracy = 0;
};

// Mean loss and accuracy over the test set, in chunks of 500 images shared out among the ranks
// (collective).
EvalResult evaluate(const models::gMLPVision& model, const Tree& params, const Dataset& test,
                    const examples::Distributed& dist) {
  const int64_t chunk = 500;
  std::vector<int32_t> idx(static_cast<size_t>(test.size()));
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int32_t>(i);
  double loss = 0, correct = 0;
  Tree vars{{"params", params}};
  auto [c0, c1] = dist.shard((test.size() + chunk - 1) / chunk);
  for (int64_t i0 = c0 * chunk; i0 < std::min(test.size(), c1 * chunk); i0 += chunk) {
    int64_t n = std::min(chunk, test.size() - i0);
    auto [x, y] = gather(test, idx.data() + i0, n);
    Array logits = model.apply(vars, x, /*deterministic=*/true);
    loss += jnp::sum(optax::softmax_cross_entropy_with_integer_labels(logits, y)).item<float>();
    correct += optax::accuracy(logits, y).item<float>() * static_cast<double>(n);
  }
  auto totals = dist.sum({loss, correct});
  loss = totals[0];
  correct = totals[1];
  return {loss / static_cast<double>(test.size()), correct / static_cast<double>(test.size())};
}

int run(Config cfg, examples::Distributed& dist) {
  examples::setup_runtime(dist.threads(cfg.run.threads));
  const auto& opt = cfg.optim;
  const auto rows = dist.batch_rows(opt.batch);  // this rank's images of the global batch
  const bool root = dist.is_root();
  std::ostream& log = dist.log();

  // ---- data ----
  Dataset train = load_split(cfg.data_dir, "train", cfg.train_limit);
  Dataset test = load_split(cfg.data_dir, "t10k", cfg.test_limit);
  int64_t steps_per_epoch = train.size() / opt.batch;
  if (steps_per_epoch == 0)
    throw examples::UsageError("--batch " + std::to_string(opt.batch) + " exceeds the " +
                               std::to_string(train.size()) + " training images");
  if (cfg.run.steps == 0) cfg.run.steps = cfg.epochs * steps_per_epoch;
  log << "data: " << train.size() << " training and " << test.size() << " test images from "
      << cfg.data_dir << "; " << steps_per_epoch << " steps per epoch, " << cfg.run.steps
      << " steps (" << static_cast<double>(cfg.run.steps) / static_cast<double>(steps_per_epoch)
      << " epochs)\n";

  // ---- model and optimizer ----
  models::gMLPVision model{.image_size = 28,
                           .patch_size = cfg.patch_size,
                           .num_classes = 10,
                           .dim = cfg.model.dim,
                           .depth = cfg.model.depth,
                           .ff_mult = cfg.model.ff_mult,
                           .survival_prob = cfg.survival_prob};
  auto keys =
      random::split(random::PRNGKey(cfg.run.seed), 3);  // init, dropout (state.rng), shuffling
  Tree params = model.init(keys[0], jnp::zeros({1, 28, 28, 1}))["params"];
  auto schedule = optax::warmup_cosine_decay_schedule(
      0.0, opt.lr, std::min(opt.warmup, cfg.run.steps / 5), cfg.run.steps, opt.lr * 0.01);
  auto decay_mask = [](const std::string& path) {
    return path.size() >= 6 && path.compare(path.size() - 6, 6, "kernel") == 0;
  };
  auto tx = optax::chain({optax::clip_by_global_norm(opt.clip),
                          optax::adamw(schedule, 0.9, 0.999, 1e-8, opt.weight_decay, decay_mask)});
  auto state =
      examples::open_checkpoints(cfg.run, training::TrainState::create(params, tx, keys[1]), dist);
  log << "model: gMLPVision(image_size=28, patch_size=" << cfg.patch_size << " -> "
      << model.num_patches() << " tokens, dim=" << cfg.model.dim << ", depth=" << cfg.model.depth
      << ", ff_mult=" << cfg.model.ff_mult << ", survival_prob=" << cfg.survival_prob << "), "
      << param_count(state.params) << " parameters; batch " << opt.batch;
  if (dist.enabled())
    log << " (" << rows.second - rows.first << " images on each of " << dist.size() << " ranks)";
  log << "\n";

  fs::path out = cfg.run.out_dir;
  std::optional<int64_t> resumed_at;
  if (cfg.run.resume) resumed_at = state.step;
  auto csv = examples::open_metrics(cfg.run, state.step, dist,  // rank 0's
                                    {"step", "epoch", "time", "train_loss", "train_acc",
                                     "test_loss", "test_acc", "lr", "images_per_s"});
  double time_offset = csv ? csv->last("time").value_or(0.0) : 0.0;

  // ---- training ----
  auto loss_fn = [&](const Tree& p, const Array& x, const Array& y, random::Key dropout) {
    Array logits = model.apply(Tree{{"params", p}}, x, /*deterministic=*/false,
                               nn::Rngs{{"dropout", dropout}});
    return std::make_pair(jnp::mean(optax::softmax_cross_entropy_with_integer_labels(logits, y)),
                          logits);
  };
  int64_t perm_epoch = -1;
  Array perm;
  auto batch_at = [&](int64_t step) {  // this rank's rows of the global batch
    int64_t epoch = step / steps_per_epoch, i = step % steps_per_epoch;
    if (epoch != perm_epoch) {
      perm =
          random::permutation(random::fold_in(keys[2], static_cast<uint32_t>(epoch)), train.size());
      perm_epoch = epoch;
    }
    return gather(train, perm.data<int32_t>() + i * opt.batch + rows.first,
                  rows.second - rows.first);
  };

  examples::Checkpoints checkpoints(cfg.run, dist, resumed_at);
  examples::Deadline deadline(cfg.run, dist);
  examples::ProgressBar bar(cfg.run.steps, cfg.run.log_every, root);
  examples::StepTimer timer;
  auto loop_start = examples::Clock::now();
  double loss_sum = 0, acc_sum = 0, window_seconds = 0;
  int64_t count = 0, logged_at = resumed_at.value_or(-1);
  EvalResult last_eval{std::numeric_limits<double>::quiet_NaN(),
                       std::numeric_limits<double>::quiet_NaN()};
  auto epoch_of = [&] {
    return static_cast<double>(state.step) / static_cast<double>(steps_per_epoch);
  };

  auto log_row = [&](bool with_eval) {
    double ips = window_seconds > 0 ? static_cast<double>(opt.batch * count) / window_seconds : 0;
    auto avg = [&](double s) {
      return count ? std::optional(s / static_cast<double>(count)) : std::nullopt;
    };
    if (csv)
      csv->row({static_cast<double>(state.step), epoch_of(),
                time_offset + examples::seconds_since(loop_start), avg(loss_sum), avg(acc_sum),
                with_eval ? std::optional(last_eval.loss) : std::nullopt,
                with_eval ? std::optional(last_eval.accuracy) : std::nullopt, schedule(state.step),
                ips > 0 ? std::optional(ips) : std::nullopt});
    loss_sum = acc_sum = window_seconds = 0;
    count = 0;
    logged_at = state.step;
  };
  auto run_eval = [&] {
    auto t0 = examples::Clock::now();
    last_eval = evaluate(model, state.params, test, dist);
    char buf[160];
    std::snprintf(buf, sizeof buf,
                  "epoch %.2f (step %lld): test accuracy %.2f%%, test loss %.4f  [eval %.1fs]",
                  epoch_of(), static_cast<long long>(state.step), 100 * last_eval.accuracy,
                  last_eval.loss, examples::seconds_since(t0));
    bar.message(buf);
  };

  while (state.step < cfg.run.steps && !deadline.reached(state.step)) {
    auto t0 = examples::Clock::now();
    auto [x, y] = batch_at(state.step);
    auto [loss, logits, grads] =
        value_and_grad(loss_fn, has_aux)(state.params, x, y, dist.rank_key(state.step_rng()));
    // The global batch's mean loss, accuracy and gradient: one allreduce for all three.
    Tree mean =
        dist.pmean(Tree{{"grads", grads}, {"loss", loss}, {"acc", optax::accuracy(logits, y)}});
    state = state.apply_gradients(mean["grads"]);
    double dt = examples::seconds_since(t0);
    timer.tick(dt);
    double l = mean["loss"].array().item<float>(), acc = mean["acc"].array().item<float>();
    if (!std::isfinite(l))
      throw std::runtime_error("the loss is " + std::to_string(l) + " at step " +
                               std::to_string(state.step) + ": lower --lr");
    loss_sum += l;
    acc_sum += acc;
    window_seconds += dt;
    ++count;
    char metrics[64];
    std::snprintf(metrics, sizeof metrics, "epoch %.2f  loss %.3f", epoch_of(), l);
    double sps = timer.seconds_per_step();
    bar.update(state.step, metrics, sps > 0 ? static_cast<double>(opt.batch) / sps : 0, "img/s",
               timer.eta(cfg.run.steps - state.step, deadline.remaining()));
    if (state.step == cfg.run.steps || deadline.reached(state.step)) break;
    bool epoch_end = state.step % steps_per_epoch == 0;
    if (epoch_end) run_eval();
    if (epoch_end || state.step % cfg.run.log_every == 0) log_row(epoch_end);
    if (epoch_end || state.step % cfg.run.ckpt_every == 0) checkpoints.save(state);
  }
  bar.finish();
  examples::report_stop(log, cfg.run, state.step);
  run_eval();
  if (logged_at != state.step) log_row(true);
  checkpoints.save_last(state);
  if (!root) return 0;

  // ---- outputs (rank 0) ----
  flaxpp::save(out / "params.json", Tree{{"params", state.params}});
  examples::plot_png(out / "metrics.csv", out / "loss.png",
                     "train_fashion_mnist: gMLPVision on Fashion-MNIST", "loss (nats)",
                     {{.column = "train_loss", .title = "train loss"},
                      {.column = "test_loss", .title = "test loss", .points = true},
                      {.column = "test_acc",
                       .title = "test accuracy (%)",
                       .scale = 100,
                       .y2 = true,
                       .points = true}},
                     "test accuracy (%)");
  std::fprintf(stderr,
               "final: step %lld (epoch %.2f), test accuracy %.2f%%, test loss %.4f, %.1f s of "
               "training; files in %s\n",
               static_cast<long long>(state.step), epoch_of(), 100 * last_eval.accuracy,
               last_eval.loss, time_offset + examples::seconds_since(loop_start),
               out.string().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  CLI::App app{
      "Trains gMLPVision on Fashion-MNIST (Debian's dataset-fashion-mnist) and reports test "
      "accuracy."};
  app.get_formatter()->column_width(34);
  examples::add_run_flags(app, cfg.run);
  app.add_option("--data-dir", cfg.data_dir,
                 "the idx .gz files (Debian package `dataset-fashion-mnist`)")
      ->capture_default_str();
  app.add_option("--epochs", cfg.epochs,
                 "epochs (when --steps is 0: steps = epochs x steps per epoch)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  examples::add_optimizer_flags(
      app, cfg.optim,
      {.batch = "images per global batch", .weight_decay = "AdamW decay (kernels)"});
  app.add_option("--patch-size", cfg.patch_size, "patch side (divides 28: 2, 4, 7, 14)")
      ->capture_default_str()
      ->check(CLI::IsMember({2, 4, 7, 14}));
  examples::add_model_flags(app, cfg.model);
  app.add_option("--survival-prob", cfg.survival_prob,
                 "stochastic depth: probability of keeping a block (1 = off)")
      ->capture_default_str()
      ->check(CLI::Range(0.01, 1.0));
  app.add_option("--train-limit", cfg.train_limit, "use only the first N training images (0 = all)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--test-limit", cfg.test_limit, "use only the first N test images (0 = all)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);
  return examples::run_main("train_fashion_mnist", cfg.run.distributed,
                            [&](examples::Distributed& dist) { return run(cfg, dist); });
}
