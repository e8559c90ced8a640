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
// A training batch is --batch random windows of seq_len + 1 bytes, drawn with
// fold_in(state.rng, step), so a run is fixed by --seed and a resumed run sees the same batches.
// With --distributed every rank draws that same global batch and trains on its rows of it
// (examples/common/distributed.hpp); evaluation is sharded over the ranks by chunks of windows
// and the sums reduced, so it returns the single-process value; rank 0 writes every output.
// The loss is next-byte cross-entropy (nats) at every one of the seq_len positions; validation
// bits per character = loss / ln 2 over consecutive windows of the validation text:
// --eval-windows evenly spaced ones every --eval-every steps, all of them (the whole split,
// unless --final-eval-windows) at the end.
// Optimizer: clip_by_global_norm -> AdamW (decay on kernels and the embedding) with a linear
// warmup then cosine decay over --steps.
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
#include <numeric>
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

// Rows [lo, hi) of a batch of `batch` windows of seq_len + 1 tokens at random offsets drawn
// from `key`: int32 (hi - lo, L + 1). Every rank draws all the offsets, so the rows it keeps are
// the ones a single process would have at those positions.
Array random_windows(const std::vector<int32_t>& ids, int64_t batch, int64_t len, random::Key key,
                     std::pair<int64_t, int64_t> rows) {
  auto [lo, hi] = rows;
  int64_t max_start = static_cast<int64_t>(ids.size()) - (len + 1);
  Array starts = random::randint(key, {batch}, 0, max_start + 1);
  Array out = Array::empty({hi - lo, len + 1}, DType::int32);
  int32_t* o = out.mutable_data<int32_t>();
  const int32_t* s = starts.data<int32_t>();
  for (int64_t b = lo; b < hi; ++b)
    std::copy_n(ids.data() + s[b], len + 1, o + (b - lo) * (len + 1));
  return out;
}

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

int run(const Config& cfg, examples::Distributed& dist) {
  examples::setup_runtime(dist.threads(cfg.run.threads));
  if (cfg.run.steps <= 0) throw examples::UsageError("--steps must be positive");
  const auto rows = dist.batch_rows(cfg.optim.batch);  // this rank's windows of the global batch
  const bool root = dist.is_root();
  std::ostream& log = dist.log();
  const double ln2 = std::log(2.0);

  // ---- data ----
  auto corpus = examples::load_fortunes(cfg.data_dir, /*val_every=*/20);
  Vocab vocab(corpus.train + corpus.val);
  std::vector<int32_t> train_ids = vocab.encode(corpus.train), val_ids = vocab.encode(corpus.val);
  if (static_cast<int64_t>(train_ids.size()) <= cfg.seq_len + 1 ||
      static_cast<int64_t>(val_ids.size()) <= cfg.seq_len + 1)
    throw examples::UsageError("the corpus is too small for --seq-len " +
                               std::to_string(cfg.seq_len));
  log << "data: " << corpus.files.size() << " fortune files from " << cfg.data_dir << ", "
      << corpus.num_train << " fortunes (" << train_ids.size() << " bytes) for training, "
      << corpus.num_val << " (" << val_ids.size() << " bytes) held out; vocabulary " << vocab.size()
      << " bytes\n";

  // ---- model and optimizer ----
  models::gMLP model{
      .num_tokens = vocab.size(),
      .dim = cfg.model.dim,
      .depth = cfg.model.depth,
      .ff_mult = cfg.model.ff_mult,
      .attn_dim = cfg.attn_dim > 0 ? std::optional<int64_t>(cfg.attn_dim) : std::nullopt,
      .seq_len = cfg.seq_len,
      .causal = true};
  auto keys = random::split(random::PRNGKey(cfg.run.seed), 3);  // init, batches, sampling
  Array example = Array::from({1, cfg.seq_len}, std::vector<int32_t>(cfg.seq_len, 0));
  Tree params = model.init(keys[0], example)["params"];
  const auto& opt = cfg.optim;
  auto schedule = optax::warmup_cosine_decay_schedule(
      0.0, opt.lr, std::min(opt.warmup, cfg.run.steps / 5), cfg.run.steps, opt.lr * 0.1);
  auto decay_mask = [](const std::string& path) {
    auto ends_with = [&](const std::string& s) {
      return path.size() >= s.size() && path.compare(path.size() - s.size(), s.size(), s) == 0;
    };
    return ends_with("kernel") || ends_with("embedding");
  };
  auto tx = optax::chain({optax::clip_by_global_norm(opt.clip),
                          optax::adamw(schedule, 0.9, 0.99, 1e-8, opt.weight_decay, decay_mask)});
  auto state =
      examples::open_checkpoints(cfg.run, training::TrainState::create(params, tx, keys[1]), dist);
  log << "model: gMLP(num_tokens=" << vocab.size() << ", dim=" << cfg.model.dim
      << ", depth=" << cfg.model.depth << ", ff_mult=" << cfg.model.ff_mult
      << ", attn_dim=" << cfg.attn_dim << ", seq_len=" << cfg.seq_len << ", causal), "
      << param_count(state.params) << " parameters; batch " << opt.batch << " x " << cfg.seq_len
      << " tokens";
  if (dist.enabled())
    log << " (" << rows.second - rows.first << " windows on each of " << dist.size() << " ranks)";
  log << "\n";

  fs::path out = cfg.run.out_dir;
  std::optional<int64_t> resumed_at;
  if (cfg.run.resume) resumed_at = state.step;
  auto csv = examples::open_metrics(  // rank 0's
      cfg.run, state.step, dist, {"step", "time", "train_loss", "val_bpc", "lr", "tokens_per_s"});
  double time_offset = csv ? csv->last("time").value_or(0.0) : 0.0;

  // ---- training ----
  // Each rank's loss and gradient are means over its rows; their mean over the (equal) shards
  // is the global batch's, in one allreduce for both.
  auto loss_fn = [&](const Tree& p, const Array& x) { return window_loss(model, p, x); };
  auto train_step = [&](const training::TrainState& s) {
    Array x = random_windows(train_ids, opt.batch, cfg.seq_len, s.step_rng(), rows);
    auto [loss, grads] = value_and_grad(loss_fn)(s.params, x);
    Tree mean = dist.pmean(Tree{{"grads", grads}, {"loss", loss}});
    return std::make_pair(s.apply_gradients(mean["grads"]),
                          static_cast<double>(mean["loss"].array().item<float>()));
  };

  examples::Checkpoints checkpoints(cfg.run, dist, resumed_at);
  examples::Deadline deadline(cfg.run, dist);
  examples::ProgressBar bar(cfg.run.steps, cfg.run.log_every, root);
  examples::StepTimer timer;
  auto loop_start = examples::Clock::now();
  double loss_sum = 0, window_seconds = 0;
  int64_t loss_count = 0;
  double last_val_bpc = std::numeric_limits<double>::quiet_NaN(), last_loss = last_val_bpc;
  int64_t logged_at = resumed_at.value_or(-1);
  const double tokens_per_step = static_cast<double>(opt.batch * cfg.seq_len);

  auto log_row = [&](bool with_eval) {
    double tps =
        window_seconds > 0 ? tokens_per_step * static_cast<double>(loss_count) / window_seconds : 0;
    if (csv)
      csv->row(
          {static_cast<double>(state.step), time_offset + examples::seconds_since(loop_start),
           loss_count ? std::optional(loss_sum / static_cast<double>(loss_count)) : std::nullopt,
           with_eval ? std::optional(last_val_bpc) : std::nullopt, schedule(state.step),
           tps > 0 ? std::optional(tps) : std::nullopt});
    loss_sum = 0;
    loss_count = 0;
    window_seconds = 0;
    logged_at = state.step;
  };
  auto run_eval = [&](int64_t windows) {
    auto t0 = examples::Clock::now();
    last_val_bpc = evaluate(model, state.params, val_ids, cfg.seq_len, windows, dist) / ln2;
    char buf[200];
    std::snprintf(buf, sizeof buf,
                  "step %lld: val %.4f bits/char%s, train loss %.4f (%.3f bits/char)  [eval %.1fs]",
                  static_cast<long long>(state.step), last_val_bpc, windows ? "" : " (whole split)",
                  last_loss, last_loss / ln2, examples::seconds_since(t0));
    bar.message(buf);
  };

  // Periodic evaluations use --eval-windows windows; the last step (end of --steps, time limit
  // or --stop-at) is evaluated on the whole validation split, logged and checkpointed after the loop.
  while (state.step < cfg.run.steps && !deadline.reached(state.step)) {
    auto t0 = examples::Clock::now();
    auto [next, loss] = train_step(state);
    state = std::move(next);
    double dt = examples::seconds_since(t0);
    timer.tick(dt);
    window_seconds += dt;
    loss_sum += loss;
    ++loss_count;
    last_loss = loss;
    if (!std::isfinite(loss))
      throw std::runtime_error("the loss is " + std::to_string(loss) + " at step " +
                               std::to_string(state.step) + ": lower --lr");
    char metrics[64];
    std::snprintf(metrics, sizeof metrics, "loss %.3f", loss);
    double sps = timer.seconds_per_step();
    bar.update(state.step, metrics, sps > 0 ? tokens_per_step / sps : 0, "tok/s",
               timer.eta(cfg.run.steps - state.step, deadline.remaining()));
    if (state.step == cfg.run.steps || deadline.reached(state.step)) break;
    bool eval_now = state.step % cfg.eval_every == 0;
    if (eval_now) run_eval(cfg.eval_windows);
    if (eval_now || state.step % cfg.run.log_every == 0) log_row(eval_now);
    if (state.step % cfg.run.ckpt_every == 0) checkpoints.save(state);
  }
  bar.finish();
  examples::report_stop(log, cfg.run, state.step);
  run_eval(cfg.final_eval_windows);
  if (logged_at != state.step) log_row(true);
  checkpoints.save_last(state);
  if (!root) return 0;

  // ---- outputs (rank 0) ----
  flaxpp::save(out / "params.json", Tree{{"params", state.params}});
  {
    std::ofstream v(out / "vocab.json");
    v << "[";
    for (int64_t i = 0; i < vocab.size(); ++i) v << (i ? ", " : "") << int(vocab.byte_of[i]);
    v << "]\n";
  }
  examples::plot_png(out / "metrics.csv", out / "loss.png", "train_charlm: gMLP on fortunes",
                     "bits per character",
                     {{.column = "train_loss", .title = "train (batch mean)", .scale = 1 / ln2},
                      {.column = "val_bpc", .title = "validation", .points = true}});
  double total_seconds = time_offset + examples::seconds_since(loop_start);
  std::fprintf(stderr, "final: step %lld, val %.4f bits/char, %.1f s of training; files in %s\n",
               static_cast<long long>(state.step), last_val_bpc, total_seconds,
               out.string().c_str());

  if (cfg.sample_len > 0) {
    std::string text =
        sample(model, state.params, vocab, cfg.prompt, cfg.sample_len, cfg.temperature, cfg.top_k,
               random::fold_in(keys[2], static_cast<uint32_t>(state.step)));
    std::ofstream(out / "sample.txt") << cfg.prompt << text << '\n';
    std::cerr << "sample (temperature " << cfg.temperature << ", top-k " << cfg.top_k << "):\n";
    std::cout << cfg.prompt << text << std::endl;
  }
  return 0;
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
