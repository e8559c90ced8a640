// train_charlm: a causal gMLP (spatial gating over seq_len characters) language model on the
// text of Debian's `fortunes` package, then a text sample from a prompt.
//
//   build/bin/train_charlm --time-limit 300 --out-dir out/charlm
//   build/bin/train_charlm --resume --out-dir out/charlm          # continues bit-for-bit
//   mpirun -np 2 build/bin/train_charlm --distributed --batch 32   # 16 windows per rank
//   build/bin/train_charlm --help
//
// Data: every fortune file in --data-dir (default /usr/share/games/fortunes); every 20th fortune
// is held out for validation. Tokens are bytes; the vocabulary is the bytes that occur (sorted).
// Training windows of seq_len + 1 bytes come from the input pipeline (data/loader.hpp): every
// start position is a row, epoch e visits them in permutation(fold_in(key, e)) with key the
// state's rng, --batch per step (the remainder dropped) and a background thread preparing the
// next --prefetch batches; so a run is fixed by --seed and a resumed run sees the same batches.
// With --distributed every rank draws that same global batch and trains on its rows of it
// (examples/common/distributed.hpp); evaluation is sharded over the ranks by chunks of windows
// and the sums reduced, so it returns the single-process value; rank 0 writes every output.
// The loss is next-byte cross-entropy (nats) at every one of the seq_len positions; validation
// bits per character = loss / ln 2 over consecutive windows of the validation text:
// --eval-windows evenly spaced ones every --eval-every steps, all of them (the whole split,
// unless --final-eval-windows) at the end.
// Optimizer: clip_by_global_norm -> --optimizer (default AdamW, decay on kernels and the
// embedding) with --schedule (default a linear warmup then cosine decay over --steps),
// --accumulate batches per update (examples/common/optimizer.hpp).
//
// Outputs in --out-dir: metrics.csv (step, time, train_loss, val_bpc, lr, tokens_per_s),
// loss.png (+ loss.gp), params.json ({"params": ...}), vocab.json (token id -> byte value),
// sample.txt, and checkpoints in ckpt/. The sample goes to stdout, everything else to stderr.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <memory>
#include <numeric>
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
  examples::RunFlags run{
      .steps = 3000, .log_every = 25, .ckpt_every = 500, .out_dir = "out/charlm"};
  examples::ModelFlags model{.dim = 128, .depth = 3, .ff_mult = 2};
  examples::OptimizerFlags optim{
      .batch = 32, .lr = 1e-2, .warmup = 100, .weight_decay = 0.01, .clip = 1.0};
  std::string data_dir = "/usr/share/games/fortunes";
  int64_t seq_len = 64;
  int64_t attn_dim = 0;
  int64_t eval_every = 250;
  int64_t eval_windows = 256;
  int64_t final_eval_windows = 0;
  std::string prompt = "The meaning of life is";
  int64_t sample_len = 300;
  double temperature = 0.8;
  int64_t top_k = 20;
};

// Byte <-> token id over the bytes that occur in the corpus.
struct Vocab {
  std::vector<int32_t> id_of = std::vector<int32_t>(256, -1);
  std::vector<uint8_t> byte_of;

  explicit Vocab(const std::string& text) {
    std::vector<bool> seen(256, false);
    for (unsigned char c : text) seen[c] = true;
    for (int b = 0; b < 256; ++b)
      if (seen[b]) {
        id_of[b] = static_cast<int32_t>(byte_of.size());
        byte_of.push_back(static_cast<uint8_t>(b));
      }
  }
  int64_t size() const { return static_cast<int64_t>(byte_of.size()); }
  std::vector<int32_t> encode(const std::string& s) const {
    std::vector<int32_t> ids;
    ids.reserve(s.size());
    for (unsigned char c : s)
      if (id_of[c] >= 0) ids.push_back(id_of[c]);
    return ids;
  }
};

// Next-byte cross-entropy (nats, mean over all positions) on windows of L + 1 tokens: the model
// reads window[:, :L] and every position t, the last one included, predicts window[:, t + 1].
// (models::next_token_loss on L tokens would leave position L - 1 untrained, and sampling with
// a full seq_len context reads exactly that position.)
Array window_loss(const models::gMLP& model, const Tree& params, const Array& windows) {
  int64_t L = windows.shape()[1] - 1;
  Array logits = model.apply(Tree{{"params", params}}, jnp::slice(windows, 1, 0, L));
  return jnp::mean(
      optax::softmax_cross_entropy_with_integer_labels(logits, jnp::slice(windows, 1, 1, L + 1)));
}

// The training text as a data::Source: row i is the window ids[i .. i + len] (len + 1 tokens),
// one row per start position.
class WindowSource final : public data::Source {
 public:
  WindowSource(const std::vector<int32_t>& ids, int64_t len) : ids_(ids), shape_{len + 1} {}
  int64_t size() const override { return static_cast<int64_t>(ids_.size()) - (shape_[0] - 1); }
  const Shape& row_shape() const override { return shape_; }
  DType dtype() const override { return DType::int32; }
  void copy_rows(const int64_t* idx, int64_t n, void* out) const override {
    auto* o = static_cast<int32_t*>(out);
    for (int64_t i = 0; i < n; ++i) std::copy_n(ids_.data() + idx[i], shape_[0], o + i * shape_[0]);
  }

 private:
  const std::vector<int32_t>& ids_;
  Shape shape_;
};

// Mean validation loss (nats per character) over the validation text cut into consecutive
// windows of seq_len predicted characters (each window also reads the character before it):
// all of them, or `max_windows` evenly spaced ones. The chunks of 64 windows are shared out
// among the ranks (collective).
double evaluate(const models::gMLP& model, const Tree& params, const std::vector<int32_t>& val,
                int64_t len, int64_t max_windows, const examples::Distributed& dist) {
  int64_t all = (static_cast<int64_t>(val.size()) - 1) / len;
  int64_t windows = max_windows > 0 ? std::min(all, max_windows) : all;
  const int64_t chunk = 64;
  auto [c0, c1] = dist.shard((windows + chunk - 1) / chunk);
  double total = 0;
  for (int64_t w0 = c0 * chunk; w0 < std::min(windows, c1 * chunk); w0 += chunk) {
    int64_t n = std::min(chunk, windows - w0);
    Array x = Array::empty({n, len + 1}, DType::int32);
    for (int64_t i = 0; i < n; ++i)
      std::copy_n(val.data() + (w0 + i) * all / windows * len, len + 1,
                  x.mutable_data<int32_t>() + i * (len + 1));
    total += window_loss(model, params, x).item<float>() * static_cast<double>(n);
  }
  total = dist.sum({total})[0];
  return windows ? total / static_cast<double>(windows) : std::numeric_limits<double>::quiet_NaN();
}

// Autoregressive sampling: the last <= seq_len tokens through the causal model, the last
// position's logits / temperature, all but the top k set to -inf, random::categorical with
// fold_in(key, i). temperature 0 takes the argmax.
std::string sample(const models::gMLP& model, const Tree& params, const Vocab& vocab,
                   const std::string& prompt, int64_t length, double temperature, int64_t top_k,
                   random::Key key) {
  std::vector<int32_t> ids = vocab.encode(prompt);
  if (ids.empty()) ids.push_back(vocab.id_of['\n'] >= 0 ? vocab.id_of['\n'] : 0);
  int64_t V = vocab.size(), L = *model.seq_len;
  Tree vars{{"params", params}};
  std::string out;
  for (int64_t i = 0; i < length; ++i) {
    int64_t n = std::min<int64_t>(L, static_cast<int64_t>(ids.size()));
    Array ctx = Array::from({1, n}, std::vector<int32_t>(ids.end() - n, ids.end()));
    Array logits = model.apply(vars, ctx);  // (1, n, V)
    std::vector<float> last(logits.data<float>() + (n - 1) * V, logits.data<float>() + n * V);
    int32_t next;
    if (temperature <= 0) {
      next = static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
    } else {
      for (float& v : last) v = static_cast<float>(v / temperature);
      if (top_k > 0 && top_k < V) {
        std::vector<float> sorted = last;
        std::nth_element(sorted.begin(), sorted.begin() + (top_k - 1), sorted.end(),
                         std::greater<float>());
        float kth = sorted[top_k - 1];
        for (float& v : last)
          if (v < kth) v = -std::numeric_limits<float>::infinity();
      }
      Array masked = Array::from({V}, last);
      next = random::categorical(random::fold_in(key, static_cast<uint32_t>(i)), masked)
                 .item<int32_t>();
    }
    ids.push_back(next);
    out.push_back(static_cast<char>(vocab.byte_of[next]));
  }
  return out;
}

// One training run, phase by phase: load_data, build, train, write_outputs.
class Run {
 public:
  Run(const Config& cfg, examples::Distributed& dist)
      : cfg_(cfg),
        dist_(dist),
        log_(dist.log()),
        rows_(dist.batch_rows(cfg.optim.batch)),
        tokens_per_step_(static_cast<double>(cfg.optim.batch * cfg.seq_len)) {}

  void load_data();
  void build();
  void train();
  int write_outputs();

 private:
  void train_step();
  void log_row(bool with_eval);
  void run_eval(int64_t windows);

  const Config& cfg_;
  examples::Distributed& dist_;
  std::ostream& log_;
  const std::pair<int64_t, int64_t> rows_;  // this rank's windows of the global batch
  const double tokens_per_step_;
  const double ln2_ = std::log(2.0);
  std::optional<Vocab> vocab_;
  std::vector<int32_t> train_ids_, val_ids_;
  std::optional<models::gMLP> model_;
  std::vector<random::Key> keys_;  // init, batches (state.rng and the pipeline), sampling
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
  double loss_sum_ = 0, window_seconds_ = 0;
  int64_t loss_count_ = 0, logged_at_ = -1;
  double last_val_bpc_ = std::numeric_limits<double>::quiet_NaN(), last_loss_ = last_val_bpc_;
};

void Run::load_data() {
  auto corpus = examples::load_fortunes(cfg_.data_dir, /*val_every=*/20);
  vocab_.emplace(corpus.train + corpus.val);
  train_ids_ = vocab_->encode(corpus.train);
  val_ids_ = vocab_->encode(corpus.val);
  if (static_cast<int64_t>(train_ids_.size()) <= cfg_.seq_len + 1 ||
      static_cast<int64_t>(val_ids_.size()) <= cfg_.seq_len + 1)
    throw examples::UsageError("the corpus is too small for --seq-len " +
                               std::to_string(cfg_.seq_len));
  log_ << "data: " << corpus.files.size() << " fortune files from " << cfg_.data_dir << ", "
       << corpus.num_train << " fortunes (" << train_ids_.size() << " bytes) for training, "
       << corpus.num_val << " (" << val_ids_.size() << " bytes) held out; vocabulary "
       << vocab_->size() << " bytes\n";
}

void Run::build() {
  model_ = models::gMLP{
      .num_tokens = vocab_->size(),
      .dim = cfg_.model.dim,
      .depth = cfg_.model.depth,
      .ff_mult = cfg_.model.ff_mult,
      .attn_dim = cfg_.attn_dim > 0 ? std::optional<int64_t>(cfg_.attn_dim) : std::nullopt,
      .seq_len = cfg_.seq_len,
      .causal = true};
  keys_ = random::split(random::PRNGKey(cfg_.run.seed), 3);
  Array example = Array::from({1, cfg_.seq_len}, std::vector<int32_t>(cfg_.seq_len, 0));
  Tree params = model_->init(keys_[0], example)["params"];
  auto decay_mask = [](const std::string& path) {
    return path.ends_with("kernel") || path.ends_with("embedding");
  };
  opt_ = examples::make_optimizer(cfg_.optim, cfg_.run.steps,
                                  {.b2 = 0.99, .end_lr = 0.1, .decay_mask = decay_mask});
  state_ = examples::open_checkpoints(
      cfg_.run, training::TrainState::create(params, opt_.tx, keys_[1]), dist_);
  const auto& o = cfg_.optim;
  log_ << "model: gMLP(num_tokens=" << vocab_->size() << ", dim=" << cfg_.model.dim
       << ", depth=" << cfg_.model.depth << ", ff_mult=" << cfg_.model.ff_mult
       << ", attn_dim=" << cfg_.attn_dim << ", seq_len=" << cfg_.seq_len << ", causal), "
       << param_count(state_.params) << " parameters; " << o.optimizer << " (" << o.schedule
       << "), batch " << o.batch << " x " << cfg_.seq_len << " tokens";
  if (o.accumulate > 1) log_ << ", " << o.accumulate << " batches per update";
  if (dist_.enabled())
    log_ << " (" << rows_.second - rows_.first << " windows on each of " << dist_.size()
         << " ranks)";
  log_ << "\n";

  // The pipeline: every start position is a row; epoch e visits them in the order
  // permutation(fold_in(keys[1], e)), --batch windows per step, this rank's rows of each.
  auto ds = data::Dataset().add("window", std::make_shared<WindowSource>(train_ids_, cfg_.seq_len));
  loader_ = std::make_unique<data::Loader>(ds, keys_[1],
                                           data::LoaderOptions{.batch_size = o.batch,
                                                               .remainder = data::Remainder::drop,
                                                               .rank = dist_.rank(),
                                                               .num_ranks = dist_.size(),
                                                               .prefetch = cfg_.run.prefetch});
  loader_->seek(state_.step);

  if (cfg_.run.resume) resumed_at_ = state_.step;
  csv_ = examples::open_metrics(  // rank 0's
      cfg_.run, state_.step, dist_,
      {"step", "time", "train_loss", "val_bpc", "lr", "tokens_per_s"});
  time_offset_ = csv_ ? csv_->last("time").value_or(0.0) : 0.0;
  logged_at_ = resumed_at_.value_or(-1);
}

void Run::log_row(bool with_eval) {
  double tps = window_seconds_ > 0
                   ? tokens_per_step_ * static_cast<double>(loss_count_) / window_seconds_
                   : 0;
  if (csv_)
    csv_->row(
        {static_cast<double>(state_.step), time_offset_ + examples::seconds_since(loop_start_),
         loss_count_ ? std::optional(loss_sum_ / static_cast<double>(loss_count_)) : std::nullopt,
         with_eval ? std::optional(last_val_bpc_) : std::nullopt, opt_.lr_at(state_.step),
         tps > 0 ? std::optional(tps) : std::nullopt});
  loss_sum_ = 0;
  loss_count_ = 0;
  window_seconds_ = 0;
  logged_at_ = state_.step;
}

void Run::run_eval(int64_t windows) {
  auto t0 = examples::Clock::now();
  last_val_bpc_ = evaluate(*model_, state_.params, val_ids_, cfg_.seq_len, windows, dist_) / ln2_;
  char buf[200];
  std::snprintf(buf, sizeof buf,
                "step %lld: val %.4f bits/char%s, train loss %.4f (%.3f bits/char)  [eval %.1fs]",
                static_cast<long long>(state_.step), last_val_bpc_, windows ? "" : " (whole split)",
                last_loss_, last_loss_ / ln2_, examples::seconds_since(t0));
  bar_->message(buf);
}

// Each rank's loss and gradient are means over its rows; their mean over the (equal) shards is
// the global batch's, in one allreduce for both.
void Run::train_step() {
  auto loss_fn = [&](const Tree& p, const Array& x) { return window_loss(*model_, p, x); };
  auto t0 = examples::Clock::now();
  data::Batch b = loader_->next();
  if (b.step != state_.step)
    throw std::logic_error("the pipeline is at step " + std::to_string(b.step) + ", the state at " +
                           std::to_string(state_.step));
  auto [loss, grads] = value_and_grad(loss_fn)(state_.params, b.data["window"].array());
  Tree mean = dist_.pmean(Tree{{"grads", grads}, {"loss", loss}});
  state_ = state_.apply_gradients(mean["grads"]);
  double l = mean["loss"].array().item<float>();
  double dt = examples::seconds_since(t0);
  timer_.tick(dt);
  window_seconds_ += dt;
  loss_sum_ += l;
  ++loss_count_;
  last_loss_ = l;
  if (!std::isfinite(l))
    throw std::runtime_error("the loss is " + std::to_string(l) + " at step " +
                             std::to_string(state_.step) + ": lower --lr");
  char metrics[64];
  std::snprintf(metrics, sizeof metrics, "loss %.3f", l);
  double sps = timer_.seconds_per_step();
  bar_->update(state_.step, metrics, sps > 0 ? tokens_per_step_ / sps : 0, "tok/s",
               timer_.eta(cfg_.run.steps - state_.step, deadline_->remaining()));
}

// Periodic evaluations use --eval-windows windows; the last step (end of --steps, time limit or
// --stop-at) is evaluated on the whole validation split, logged and checkpointed after the loop.
void Run::train() {
  checkpoints_ = std::make_unique<examples::Checkpoints>(cfg_.run, dist_, resumed_at_);
  deadline_ = std::make_unique<examples::Deadline>(cfg_.run, dist_);
  bar_ =
      std::make_unique<examples::ProgressBar>(cfg_.run.steps, cfg_.run.log_every, dist_.is_root());
  loop_start_ = examples::Clock::now();
  while (state_.step < cfg_.run.steps && !deadline_->reached(state_.step)) {
    train_step();
    if (state_.step == cfg_.run.steps || deadline_->reached(state_.step)) break;
    bool eval_now = state_.step % cfg_.eval_every == 0;
    if (eval_now) run_eval(cfg_.eval_windows);
    if (eval_now || state_.step % cfg_.run.log_every == 0) log_row(eval_now);
    if (state_.step % cfg_.run.ckpt_every == 0) checkpoints_->save(state_);
  }
  bar_->finish();
  examples::report_stop(log_, cfg_.run, state_.step);
  run_eval(cfg_.final_eval_windows);
  if (logged_at_ != state_.step) log_row(true);
  checkpoints_->save_last(state_);
}

int Run::write_outputs() {
  if (!dist_.is_root()) return 0;
  fs::path out = cfg_.run.out_dir;
  flaxpp::save(out / "params.json", Tree{{"params", state_.params}});
  {
    std::ofstream v(out / "vocab.json");
    v << "[";
    for (int64_t i = 0; i < vocab_->size(); ++i) v << (i ? ", " : "") << int(vocab_->byte_of[i]);
    v << "]\n";
  }
  examples::plot_png(out / "metrics.csv", out / "loss.png", "train_charlm: gMLP on fortunes",
                     "bits per character",
                     {{.column = "train_loss", .title = "train (batch mean)", .scale = 1 / ln2_},
                      {.column = "val_bpc", .title = "validation", .points = true}});
  double total_seconds = time_offset_ + examples::seconds_since(loop_start_);
  std::fprintf(stderr, "final: step %lld, val %.4f bits/char, %.1f s of training; files in %s\n",
               static_cast<long long>(state_.step), last_val_bpc_, total_seconds,
               out.string().c_str());

  if (cfg_.sample_len > 0) {
    std::string text =
        sample(*model_, state_.params, *vocab_, cfg_.prompt, cfg_.sample_len, cfg_.temperature,
               cfg_.top_k, random::fold_in(keys_[2], static_cast<uint32_t>(state_.step)));
    std::ofstream(out / "sample.txt") << cfg_.prompt << text << '\n';
    std::cerr << "sample (temperature " << cfg_.temperature << ", top-k " << cfg_.top_k << "):\n";
    std::cout << cfg_.prompt << text << std::endl;
  }
  return 0;
}

int run(const Config& cfg, examples::Distributed& dist) {
  examples::setup_runtime(dist.threads(cfg.run.threads));
  if (cfg.run.steps <= 0) throw examples::UsageError("--steps must be positive");
  Run r(cfg, dist);
  r.load_data();
  r.build();
  r.train();
  return r.write_outputs();
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  CLI::App app{
      "Trains a causal gMLP character language model on Debian's fortunes, then samples from it."};
  app.get_formatter()->column_width(34);
  examples::add_run_flags(app, cfg.run);
  app.add_option("--data-dir", cfg.data_dir, "fortune files (Debian package `fortunes`)")
      ->capture_default_str();
  examples::add_optimizer_flags(
      app, cfg.optim,
      {.batch = "windows per global batch", .weight_decay = "AdamW decay (kernels and embedding)"});
  app.add_option("--seq-len", cfg.seq_len, "characters per window = the model's seq_len")
      ->capture_default_str()
      ->check(CLI::Range(2, 4096));
  examples::add_model_flags(app, cfg.model);
  app.add_option("--attn-dim", cfg.attn_dim,
                 "tiny causal attention head size in every block, the paper's aMLP (0 = none)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--eval-every", cfg.eval_every, "steps between validation runs")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--eval-windows", cfg.eval_windows,
                 "validation windows per periodic evaluation (0 = all)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--final-eval-windows", cfg.final_eval_windows,
                 "validation windows for the final evaluation (0 = all)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--sample-prompt", cfg.prompt, "text the sample continues")->capture_default_str();
  app.add_option("--sample-len", cfg.sample_len, "characters to sample (0 = no sample)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--temperature", cfg.temperature, "sampling temperature (0 = greedy)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--top-k", cfg.top_k, "sample among the k likeliest characters (0 = all)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);
  return examples::run_main("train_charlm", cfg.run.distributed,
                            [&](examples::Distributed& dist) { return run(cfg, dist); });
}
