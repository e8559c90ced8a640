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
// training set's mean 0.2860 and std 0.3530. The input pipeline (data/loader.hpp) visits the
// training set in the order random::permutation(fold_in(shuffle_key, epoch)) in batches of
// --batch (the remainder is dropped), a background thread preparing the next --prefetch; with
// --augment each image is shifted by up to 2 pixels and maybe flipped, from the batch's key
// (data/augment.hpp; under --distributed each rank draws for its own rows). Dropout keys (stochastic depth) are fold_in(state.rng, step). So a run is fixed by
// --seed and a resumed run sees the same batches. With --distributed every rank takes its rows of
// that same global batch, its dropout keys are fold_in(fold_in(state.rng, step), rank) (so only
// with --survival-prob 1 does it follow the single-process run exactly), and the test set is
// evaluated in chunks shared out among the ranks, the sums reduced; rank 0 writes every output
// (examples/common/distributed.hpp).
// Model: gMLPVision(image_size 28, --patch-size, 10 classes, --dim, --depth, --ff-mult,
// survival_prob = --survival-prob). Optimizer: clip_by_global_norm -> --optimizer (default AdamW,
// decay on kernels) with --schedule (default a linear warmup then cosine decay over all steps:
// --epochs x steps per epoch, or --steps), --accumulate batches per update
// (examples/common/optimizer.hpp).
// Test accuracy (deterministic, no stochastic depth) at the end of every epoch and of the run.
//
// Outputs in --out-dir: metrics.csv (step, epoch, time, train_loss, train_acc, test_loss,
// test_acc, lr, images_per_s), loss.png (+ loss.gp), params.json ({"params": ...}), ckpt/.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/cli.hpp"
#include "common/data.hpp"
#include "common/distributed.hpp"
#include "common/metrics.hpp"
#include "common/optimizer.hpp"
#include "common/progress.hpp"
#include "common/training.hpp"
#include "core/autodiff.hpp"
#include "core/ops.hpp"
#include "core/random.hpp"
#include "data/augment.hpp"
#include "data/loader.hpp"
#include "models/gmlp.hpp"
#include "nn/losses.hpp"
#include "optax/optax.hpp"
#include "serialization/serialization.hpp"
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
  bool augment = false;
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

// Image i's 784 pixels scaled to [0, 1] and standardised.
void normalise(const Dataset& d, int64_t i, float* out) {
  const uint8_t* src = d.images.pixels.data() + static_cast<size_t>(i) * 784;
  for (int p = 0; p < 784; ++p) out[p] = (static_cast<float>(src[p]) / 255.f - kMean) / kStd;
}

// Images idx[0..n) as normalised float32 (n, 28, 28, 1) and their labels int32 (n,).
std::pair<Array, Array> gather(const Dataset& d, const int32_t* idx, int64_t n) {
  Array x = Array::empty({n, 28, 28, 1}, DType::float32);
  Array y = Array::empty({n}, DType::int32);
  float* xp = x.mutable_data<float>();
  int32_t* yp = y.mutable_data<int32_t>();
  for (int64_t i = 0; i < n; ++i) {
    normalise(d, idx[i], xp + i * 784);
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

// The training images as a data::Source: normalised float32 (28, 28, 1) rows computed from the
// uint8 pixels as they are gathered, so the 60000 images stay 47 MB.
class ImageSource final : public data::Source {
 public:
  explicit ImageSource(const Dataset& d) : d_(d) {}
  int64_t size() const override { return d_.size(); }
  const Shape& row_shape() const override { return shape_; }
  DType dtype() const override { return DType::float32; }
  void copy_rows(const int64_t* idx, int64_t n, void* out) const override {
    float* xp = static_cast<float*>(out);
    for (int64_t i = 0; i < n; ++i) normalise(d_, idx[i], xp + i * 784);
  }

 private:
  const Dataset& d_;
  Shape shape_{28, 28, 1};
};

// --augment: a random shift of up to 2 pixels (zero padding) and a left-right flip per image,
// from the batch's key (data::Loader passes fold_in(fold_in(key, 0x7fffffff), step)).
Tree augment(const Tree& batch, random::Key key) {
  auto ks = random::split(key);
  Array x = data::random_crop(batch["image"].array(), ks[0], 2);
  return batch.set("image", Tree(data::random_flip_left_right(x, ks[1])));
}

// One training run, phase by phase: load_data, build, train, write_outputs.
class Run {
 public:
  Run(Config cfg, examples::Distributed& dist)
      : cfg_(std::move(cfg)),
        dist_(dist),
        log_(dist.log()),
        rows_(dist.batch_rows(cfg_.optim.batch)) {}

  void load_data();
  void build();
  void train();
  int write_outputs();

 private:
  void train_step();
  void log_row(bool with_eval);
  void run_eval();
  double epoch() const {
    return static_cast<double>(state_.step) / static_cast<double>(steps_per_epoch_);
  }

  Config cfg_;
  examples::Distributed& dist_;
  std::ostream& log_;
  const std::pair<int64_t, int64_t> rows_;  // this rank's images of the global batch
  Dataset train_, test_;
  int64_t steps_per_epoch_ = 0;
  std::optional<models::gMLPVision> model_;
  std::vector<random::Key> keys_;  // init, dropout (state.rng), shuffling
  examples::Optimizer opt_;
  training::TrainState state_;
  std::unique_ptr<data::Loader> loader_;
  std::optional<int64_t> resumed_at_;
  std::optional<examples::MetricsCsv> csv_;
  double time_offset_ = 0;
  examples::Clock::time_point loop_start_;
  std::unique_ptr<examples::ProgressBar> bar_;
  std::unique_ptr<examples::Deadline> deadline_;
  std::unique_ptr<examples::Checkpoints> checkpoints_;
  examples::StepTimer timer_;
  double loss_sum_ = 0, acc_sum_ = 0, window_seconds_ = 0;
  int64_t count_ = 0, logged_at_ = -1;
  EvalResult last_eval_{std::numeric_limits<double>::quiet_NaN(),
                        std::numeric_limits<double>::quiet_NaN()};
};

void Run::load_data() {
  train_ = load_split(cfg_.data_dir, "train", cfg_.train_limit);
  test_ = load_split(cfg_.data_dir, "t10k", cfg_.test_limit);
  steps_per_epoch_ = train_.size() / cfg_.optim.batch;
  if (steps_per_epoch_ == 0)
    throw examples::UsageError("--batch " + std::to_string(cfg_.optim.batch) + " exceeds the " +
                               std::to_string(train_.size()) + " training images");
  if (cfg_.run.steps == 0) cfg_.run.steps = cfg_.epochs * steps_per_epoch_;
  log_ << "data: " << train_.size() << " training and " << test_.size() << " test images from "
       << cfg_.data_dir << "; " << steps_per_epoch_ << " steps per epoch, " << cfg_.run.steps
       << " steps (" << static_cast<double>(cfg_.run.steps) / static_cast<double>(steps_per_epoch_)
       << " epochs)" << (cfg_.augment ? "; augmented (shift <= 2 px, flip)" : "") << "\n";
}

void Run::build() {
  model_ = models::gMLPVision{.image_size = 28,
                              .patch_size = cfg_.patch_size,
                              .num_classes = 10,
                              .dim = cfg_.model.dim,
                              .depth = cfg_.model.depth,
                              .ff_mult = cfg_.model.ff_mult,
                              .survival_prob = cfg_.survival_prob};
  keys_ = random::split(random::PRNGKey(cfg_.run.seed), 3);
  Tree params = model_->init(keys_[0], jnp::zeros({1, 28, 28, 1}))["params"];
  auto decay_mask = [](const std::string& path) { return path.ends_with("kernel"); };
  opt_ = examples::make_optimizer(cfg_.optim, cfg_.run.steps,
                                  {.b2 = 0.999, .end_lr = 0.01, .decay_mask = decay_mask});
  state_ = examples::open_checkpoints(
      cfg_.run, training::TrainState::create(params, opt_.tx, keys_[1]), dist_);
  const auto& o = cfg_.optim;
  log_ << "model: gMLPVision(image_size=28, patch_size=" << cfg_.patch_size << " -> "
       << model_->num_patches() << " tokens, dim=" << cfg_.model.dim
       << ", depth=" << cfg_.model.depth << ", ff_mult=" << cfg_.model.ff_mult
       << ", survival_prob=" << cfg_.survival_prob << "), " << param_count(state_.params)
       << " parameters; " << o.optimizer << " (" << o.schedule << "), batch " << o.batch;
  if (o.accumulate > 1) log_ << " x " << o.accumulate << " accumulated";
  if (dist_.enabled())
    log_ << " (" << rows_.second - rows_.first << " images on each of " << dist_.size()
         << " ranks)";
  log_ << "\n";

  // The pipeline: the epoch-e order is permutation(fold_in(keys[2], e)), the remainder dropped,
  // this rank's rows of each global batch; it continues from the resumed step.
  auto ds = data::Dataset()
                .add("image", std::make_shared<ImageSource>(train_))
                .add("label", std::make_shared<data::ArraySource>(Array::from(
                                  {train_.size()}, std::vector<int32_t>(train_.labels.begin(),
                                                                        train_.labels.end()))));
  data::LoaderOptions lo{.batch_size = o.batch,
                         .remainder = data::Remainder::drop,
                         .rank = dist_.rank(),
                         .num_ranks = dist_.size(),
                         .prefetch = cfg_.run.prefetch};
  if (cfg_.augment) lo.transform = augment;
  loader_ = std::make_unique<data::Loader>(ds, keys_[2], lo);
  loader_->seek(state_.step);

  if (cfg_.run.resume) resumed_at_ = state_.step;
  csv_ = examples::open_metrics(cfg_.run, state_.step, dist_,  // rank 0's
                                {"step", "epoch", "time", "train_loss", "train_acc", "test_loss",
                                 "test_acc", "lr", "images_per_s"});
  time_offset_ = csv_ ? csv_->last("time").value_or(0.0) : 0.0;
  logged_at_ = resumed_at_.value_or(-1);
}

void Run::log_row(bool with_eval) {
  double ips =
      window_seconds_ > 0 ? static_cast<double>(cfg_.optim.batch * count_) / window_seconds_ : 0;
  auto avg = [&](double s) {
    return count_ ? std::optional(s / static_cast<double>(count_)) : std::nullopt;
  };
  if (csv_)
    csv_->row({static_cast<double>(state_.step), epoch(),
               time_offset_ + examples::seconds_since(loop_start_), avg(loss_sum_), avg(acc_sum_),
               with_eval ? std::optional(last_eval_.loss) : std::nullopt,
               with_eval ? std::optional(last_eval_.accuracy) : std::nullopt,
               opt_.lr_at(state_.step), ips > 0 ? std::optional(ips) : std::nullopt});
  loss_sum_ = acc_sum_ = window_seconds_ = 0;
  count_ = 0;
  logged_at_ = state_.step;
}

void Run::run_eval() {
  auto t0 = examples::Clock::now();
  last_eval_ = evaluate(*model_, state_.params, test_, dist_);
  char buf[160];
  std::snprintf(buf, sizeof buf,
                "epoch %.2f (step %lld): test accuracy %.2f%%, test loss %.4f  [eval %.1fs]",
                epoch(), static_cast<long long>(state_.step), 100 * last_eval_.accuracy,
                last_eval_.loss, examples::seconds_since(t0));
  bar_->message(buf);
}

void Run::train_step() {
  auto loss_fn = [&](const Tree& p, const Array& x, const Array& y, random::Key dropout) {
    Array logits = model_->apply(Tree{{"params", p}}, x, /*deterministic=*/false,
                                 nn::Rngs{{"dropout", dropout}});
    return std::make_pair(jnp::mean(optax::softmax_cross_entropy_with_integer_labels(logits, y)),
                          logits);
  };
  auto t0 = examples::Clock::now();
  data::Batch b = loader_->next();
  if (b.step != state_.step)
    throw std::logic_error("the pipeline is at step " + std::to_string(b.step) + ", the state at " +
                           std::to_string(state_.step));
  const Array &x = b.data["image"].array(), &y = b.data["label"].array();
  auto [loss, logits, grads] =
      value_and_grad(loss_fn, has_aux)(state_.params, x, y, dist_.rank_key(state_.step_rng()));
  // The global batch's mean loss, accuracy and gradient: one allreduce for all three.
  Tree mean =
      dist_.pmean(Tree{{"grads", grads}, {"loss", loss}, {"acc", optax::accuracy(logits, y)}});
  state_ = state_.apply_gradients(mean["grads"]);
  double dt = examples::seconds_since(t0);
  timer_.tick(dt);
  double l = mean["loss"].array().item<float>(), acc = mean["acc"].array().item<float>();
  if (!std::isfinite(l))
    throw std::runtime_error("the loss is " + std::to_string(l) + " at step " +
                             std::to_string(state_.step) + ": lower --lr");
  loss_sum_ += l;
  acc_sum_ += acc;
  window_seconds_ += dt;
  ++count_;
  char metrics[64];
  std::snprintf(metrics, sizeof metrics, "epoch %.2f  loss %.3f", epoch(), l);
  double sps = timer_.seconds_per_step();
  bar_->update(state_.step, metrics, sps > 0 ? static_cast<double>(cfg_.optim.batch) / sps : 0,
               "img/s", timer_.eta(cfg_.run.steps - state_.step, deadline_->remaining()));
}

void Run::train() {
  checkpoints_ = std::make_unique<examples::Checkpoints>(cfg_.run, dist_, resumed_at_);
  deadline_ = std::make_unique<examples::Deadline>(cfg_.run, dist_);
  bar_ =
      std::make_unique<examples::ProgressBar>(cfg_.run.steps, cfg_.run.log_every, dist_.is_root());
  loop_start_ = examples::Clock::now();
  while (state_.step < cfg_.run.steps && !deadline_->reached(state_.step)) {
    train_step();
    if (state_.step == cfg_.run.steps || deadline_->reached(state_.step)) break;
    bool epoch_end = state_.step % steps_per_epoch_ == 0;
    if (epoch_end) run_eval();
    if (epoch_end || state_.step % cfg_.run.log_every == 0) log_row(epoch_end);
    if (epoch_end || state_.step % cfg_.run.ckpt_every == 0) checkpoints_->save(state_);
  }
  bar_->finish();
  examples::report_stop(log_, cfg_.run, state_.step);
  run_eval();
  if (logged_at_ != state_.step) log_row(true);
  checkpoints_->save_last(state_);
}

int Run::write_outputs() {
  if (!dist_.is_root()) return 0;
  fs::path out = cfg_.run.out_dir;
  flaxpp::save(out / "params.json", Tree{{"params", state_.params}});
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
               static_cast<long long>(state_.step), epoch(), 100 * last_eval_.accuracy,
               last_eval_.loss, time_offset_ + examples::seconds_since(loop_start_),
               out.string().c_str());
  return 0;
}

int run(Config cfg, examples::Distributed& dist) {
  examples::setup_runtime(dist.threads(cfg.run.threads));
  Run r(std::move(cfg), dist);
  r.load_data();
  r.build();
  r.train();
  return r.write_outputs();
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
  app.add_flag("--augment", cfg.augment,
               "augment the training images: a random shift of up to 2 pixels and a left-right "
               "flip, from the batch's key");
  CLI11_PARSE(app, argc, argv);
  return examples::run_main("train_fashion_mnist", cfg.run.distributed,
                            [&](examples::Distributed& dist) { return run(cfg, dist); });
}
