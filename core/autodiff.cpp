#include "core/autodiff.hpp"

#include <optional>
#include <unordered_map>

#include "core/ops.hpp"
#include "core/parallel.hpp"
#include "core/primitive.hpp"

namespace flaxpp::autodiff {

namespace {
thread_local bool t_recording = true;
thread_local int t_depth = 0;
thread_local bool t_consuming = false;

struct ConsumingScope {
  bool prev;
  explicit ConsumingScope(bool on) : prev(t_consuming) { t_consuming = on; }
  ~ConsumingScope() { t_consuming = prev; }
};

// acc += g, elementwise, same shape (the same float additions jnp::add makes).
void add_in_place(Array& acc, const Array& g) {
  float* pa = acc.mutable_data<float>();
  const float* pg = g.data<float>();
  parallel_for(acc.size(), 1 << 15, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) pa[i] += pg[i];
  });
}

// A closure rule recorded by autodiff::record (ops not yet in the primitive table).
struct ClosureNode final : Node {
  VjpRule rule;
  JvpRule jvp_rule;
  Grads vjp(const Array& g, const Array& out, const Need& need) override {
    return rule(g, out, need);
  }
  Array jvp(const Grads& t, const Need& perturbed, const Array& out) override {
    return jvp_rule ? jvp_rule(t, perturbed, out) : Node::jvp(t, perturbed, out);
  }
  void release() override {
    rule = nullptr;
    jvp_rule = nullptr;
    saved_output = Array();
  }
};

// A transformation's input: the identity, linking to the outer value's node (nested transforms).
struct LeafNode final : Node {
  Grads vjp(const Array& g, const Array&, const Need&) override { return {g}; }
  Array jvp(const Grads& t, const Need&, const Array&) override { return t[0]; }
};
}  // namespace

Array reusable(const Array& a, const Shape& shape, DType dtype) {
  if (t_consuming && a.use_count() == 1 &&
      a.nbytes() == static_cast<size_t>(numel(shape)) * itemsize(dtype) && a.dtype() == dtype)
    return a.reshaped(shape).detached();
  return Array::empty(shape, dtype);
}

bool is_recording() { return t_recording; }
int trace_depth() { return t_depth; }

NoRecord::NoRecord() : prev_(t_recording) { t_recording = false; }
NoRecord::~NoRecord() { t_recording = prev_; }
RecordOn::RecordOn() : prev_(t_recording) { t_recording = true; }
RecordOn::~RecordOn() { t_recording = prev_; }

TraceScope::TraceScope() { ++t_depth; }
TraceScope::~TraceScope() { --t_depth; }

Array record(const char* op, Array out, std::vector<const Array*> inputs, VjpRule rule, Keep keep,
             JvpRule jvp) {
  for (const Array* a : inputs)
    if (prim::batched(*a))
      throw std::invalid_argument(std::string("vmap: no batching rule for ") + op + " yet");
  for (const Array* a : inputs)
    if (prim::traced(*a))
      throw std::invalid_argument(std::string("make_jaxpr: ") + op +
                                  " is not in the primitive table yet");
  auto node = std::make_shared<ClosureNode>();
  node->op = op;
  node->parents.reserve(inputs.size());
  for (const Array* a : inputs) node->parents.push_back(a->node());
  node->rule = std::move(rule);
  node->jvp_rule = std::move(jvp);
  node->shape = out.shape();
  if (keep == Keep::output) node->saved_output = out.detached();
  out.set_node(std::move(node));
  return out;
}

Array trace_leaf(const Array& x, const char* what) {
  if (!x.is_float())
    throw std::invalid_argument(std::string(what) +
                                " requires float32 inputs, got an array of dtype " +
                                dtype_name(x.dtype()) + " and shape " + to_string(x.shape()));
  if (prim::traced(x))
    throw std::invalid_argument(std::string("make_jaxpr: ") + what +
                                " inside a traced function is not supported yet");
  Array leaf = x.detached();
  auto node = std::make_shared<LeafNode>();
  node->op = "trace";
  node->parents.push_back(x.node());  // identity of the outer value, for nested transforms
  node->shape = x.shape();
  if (x.node()) node->batch = x.node()->batch;  // grad inside vmap: the leaf stays batched
  leaf.set_node(std::move(node));
  return leaf;
}

Array zeros_like_value(const Array& a) { return jnp::zeros(a.shape(), a.dtype()); }

Array vdot_all(const std::vector<Array>& a, const std::vector<Array>& b) {
  if (a.size() != b.size()) throw std::invalid_argument("vdot_all: structures differ");
  Array s(0.f);
  for (size_t i = 0; i < a.size(); ++i) s = s + jnp::vdot(a[i], b[i]);
  return s;
}

Array unbroadcast(const Array& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  size_t lead = g.ndim() - shape.size();
  Axes axes;
  for (size_t i = 0; i < g.ndim(); ++i)
    if (i < lead || (shape[i - lead] == 1 && g.shape()[i] != 1))
      axes.push_back(static_cast<int64_t>(i));
  Array r = jnp::sum(g, axes, /*keepdims=*/true);
  return jnp::reshape(r, shape);
}

// Forward mode through a closure rule: vjp is linear in its cotangent u, so
// J t = sum_k J_k t_k = d/du sum_k <vjp_k(u), t_k>, differentiated once at u = 0.
Array Node::jvp(const Grads& tangents, const Need& need, const Array& out) {
  bool nested = t_depth > 0 && t_recording;
  RecordOn recording;
  Array u, s(0.f);
  {
    TraceScope scope;
    u = trace_leaf(jnp::zeros(shape), "jvp");
    Grads ct = vjp(u, out, need);
    for (size_t k = 0; k < need.size(); ++k)
      if (need[k]) s = s + jnp::vdot(ct[k], tangents[k]);
  }
  return backward({s}, {Array(1.f)}, {u}, /*record_backward=*/nested)[0];
}

// ---- the three phases of the reverse pass (and forward mode's sweep) --------------------------

namespace {

// Every node reachable from the outputs, parents before children (iterative DFS).
std::vector<Node*> topological_order(const std::vector<Array>& outputs) {
  std::vector<Node*> order;
  std::unordered_map<Node*, int> state;  // 1 = visiting, 2 = done
  std::vector<std::pair<Node*, size_t>> stack;
  for (const Array& o : outputs) {
    Node* root = o.node().get();
    if (!root || state.count(root)) continue;
    stack.push_back({root, 0});
    state[root] = 1;
    while (!stack.empty()) {
      auto& [n, i] = stack.back();
      if (i < n->parents.size()) {
        Node* p = n->parents[i++].get();
        if (p && !state.count(p)) {
          state[p] = 1;
          stack.push_back({p, 0});
        }
      } else {
        state[n] = 2;
        order.push_back(n);
        stack.pop_back();
      }
    }
  }
  return order;
}

// Which nodes of `order` some target is reachable from (targets themselves included).
std::unordered_map<Node*, bool> reaching(const std::vector<Node*>& order,
                                         const std::unordered_map<Node*, size_t>& targets) {
  std::unordered_map<Node*, bool> reaches;
  for (Node* n : order) {  // parents come before children in `order`
    bool r = targets.count(n) > 0;
    if (!r)
      for (auto& p : n->parents)
        if (p && reaches[p.get()]) {
          r = true;
          break;
        }
    reaches[n] = r;
  }
  return reaches;
}

// Runs the vjp rules from the outputs down to the targets; returns the cotangent map.
std::unordered_map<Node*, Array> propagate(const std::vector<Array>& outputs,
                                           const std::vector<Array>& seeds,
                                           const std::vector<Node*>& order,
                                           const std::unordered_map<Node*, size_t>& targets,
                                           std::unordered_map<Node*, bool>& reaches,
                                           bool record_backward, bool consume) {
  std::unordered_map<Node*, Array> ct;
  auto accumulate = [&](Node* n, const Array& g) {
    auto it = ct.find(n);
    if (it == ct.end()) {
      ct.emplace(n, g);
    } else if (consume && it->second.use_count() == 1 && it->second.is_float() && g.is_float() &&
               it->second.shape() == g.shape() && !g.shares_buffer_with(it->second)) {
      add_in_place(it->second, g);  // sole owner: accumulate in place
    } else {
      it->second = it->second + g;
    }
  };
  for (size_t i = 0; i < outputs.size(); ++i) {
    Node* n = outputs[i].node().get();
    if (n && reaches[n]) accumulate(n, seeds[i]);
  }
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    Node* n = *it;
    if (!reaches[n] || targets.count(n)) continue;
    auto c = ct.find(n);
    if (c == ct.end()) continue;
    Array g = c->second;
    ct.erase(c);  // free cotangents as soon as they are consumed
    Need need(n->parents.size());
    bool any = false;
    for (size_t k = 0; k < need.size(); ++k) {
      need[k] = n->parents[k] && reaches[n->parents[k].get()];
      any = any || need[k];
    }
    if (!any) continue;
    Array out = n->saved_output;
    // Give the rule the output with its own node so recorded expressions link to it.
    if (record_backward) out.set_node(n->shared_from_this());
    auto grads = n->vjp(g, out, need);
    if (consume) n->release();  // run once: drop the rule's captured activations now
    g = Array();
    out = Array();
    for (size_t k = 0; k < need.size(); ++k)
      if (need[k]) accumulate(n->parents[k].get(), grads[k]);
  }
  return ct;
}

}  // namespace

std::vector<Array> backward(const std::vector<Array>& outputs, const std::vector<Array>& seeds,
                            const std::vector<Array>& targets, bool record_backward, bool consume) {
  std::optional<NoRecord> guard;
  if (!record_backward) guard.emplace();
  consume = consume && !record_backward;
  ConsumingScope consuming(consume);

  std::vector<Node*> order = topological_order(outputs);
  std::unordered_map<Node*, size_t> target_index;
  for (size_t i = 0; i < targets.size(); ++i) target_index[targets[i].node().get()] = i;
  auto reaches = reaching(order, target_index);
  auto ct = propagate(outputs, seeds, order, target_index, reaches, record_backward, consume);

  std::vector<Array> result;
  result.reserve(targets.size());
  for (const Array& t : targets) {
    auto c = ct.find(t.node().get());
    result.push_back(c != ct.end() ? c->second : jnp::zeros(t.shape(), t.dtype()));
  }
  return result;
}

std::vector<Array> forward(const std::vector<Array>& outputs, const std::vector<Array>& leaves,
                           const std::vector<Array>& tangents, bool record) {
  std::optional<NoRecord> guard;
  if (!record) guard.emplace();
  std::unordered_map<Node*, Array> tan;
  for (size_t i = 0; i < leaves.size(); ++i) tan[leaves[i].node().get()] = tangents[i];
  for (Node* n : topological_order(outputs)) {
    if (tan.count(n)) continue;
    bool any = false;
    Grads t(n->parents.size());
    Need perturbed(t.size());
    for (size_t k = 0; k < t.size(); ++k) {
      Node* p = n->parents[k].get();
      auto it = p ? tan.find(p) : tan.end();
      if (it != tan.end()) {
        t[k] = it->second;
        perturbed[k] = any = true;
      }
    }
    if (!any) continue;
    for (size_t k = 0; k < t.size(); ++k)
      if (n->parents[k] && !tan.count(n->parents[k].get()))
        t[k] = jnp::zeros(n->parents[k]->shape);
      else if (!n->parents[k])
        t[k] = Array();  // a constant input: its tangent is zero (rules see a scalar 0)
    Array out = n->saved_output;
    if (record) out.set_node(n->shared_from_this());
    Array dy = n->jvp(t, perturbed, out);
    // Rules may form the tangent from scalar zeros of constants: give it the output's shape.
    tan[n] = dy.shape() == n->shape ? dy : jnp::broadcast_to(dy, n->shape);
  }
  std::vector<Array> result;
  result.reserve(outputs.size());
  for (const Array& o : outputs) {
    auto it = o.node() ? tan.find(o.node().get()) : tan.end();
    result.push_back(it != tan.end() ? it->second : jnp::zeros(o.shape(), o.dtype()));
  }
  return result;
}

}  // namespace flaxpp::autodiff
