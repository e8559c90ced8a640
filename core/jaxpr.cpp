// make_jaxpr's trace: placeholder values, one equation per bound primitive, the printer.
#include "core/jaxpr.hpp"

#include <ostream>
#include <sstream>
#include <stdexcept>

#include "core/primitive.hpp"

namespace flaxpp {

namespace {

thread_local Jaxpr* t_jaxpr = nullptr;

// A traced value: nothing to differentiate or batch, only its variable.
struct VarNode final : autodiff::Node {
  VarNode() { tape = false; }
  Grads vjp(const Array&, const Array&, const Need&) override {
    throw std::logic_error("make_jaxpr: a traced variable was differentiated");
  }
};

Array new_var(Jaxpr& j, const Shape& shape, DType dtype) {
  int id = static_cast<int>(j.vars.size());
  j.vars.push_back({id, shape, dtype});
  Array out = Array::empty(shape, dtype);  // never read: kernels do not run while tracing
  auto node = std::make_shared<VarNode>();
  node->op = "var";
  node->shape = shape;
  node->ir_var = id;
  out.set_node(std::move(node));
  return out;
}

// a, b, ..., z, ba, bb, ... as JAX names its variables.
std::string var_name(int id) {
  std::string s(1, static_cast<char>('a' + id % 26));
  for (id /= 26; id > 0; id /= 26) s.insert(s.begin(), static_cast<char>('a' + id % 26));
  return s;
}

std::string type_of(const Jaxpr::Var& v) {
  static constexpr const char* names[] = {"f32", "i32", "u32", "bool"};
  const char* t = v.dtype == DType::float32  ? names[0]
                  : v.dtype == DType::int32  ? names[1]
                  : v.dtype == DType::uint32 ? names[2]
                                             : names[3];
  std::string s = std::string(t) + "[";
  for (size_t i = 0; i < v.shape.size(); ++i) s += (i ? "," : "") + std::to_string(v.shape[i]);
  return s + "]";
}

std::string literal(const Array& a) {
  std::ostringstream os;
  if (a.is_float()) {
    float v = a.item<float>();
    os << v;
    std::string s = os.str();
    if (s.find_first_of(".einf") == std::string::npos) s += ".0";
    return s;
  }
  os << a.item<int64_t>();
  return os.str();
}

}  // namespace

namespace prim {
Array trace_equation(const char* name, const std::string& params, const Aval& out,
                     const std::vector<const Array*>& ins) {
  Jaxpr& j = *t_jaxpr;
  Jaxpr::Eqn e{name, params, {}, 0};
  for (const Array* a : ins) {
    if (traced(*a)) {
      e.ins.push_back({a->node()->ir_var, ""});
    } else if (a->ndim() == 0) {
      e.ins.push_back({-1, literal(*a)});
    } else {  // a captured array: a constant of the jaxpr
      Array c = new_var(j, a->shape(), a->dtype());
      j.constvars.push_back(c.node()->ir_var);
      j.consts.push_back(a->detached());
      e.ins.push_back({c.node()->ir_var, ""});
    }
  }
  Array o = new_var(j, out.shape, out.dtype);
  e.out = o.node()->ir_var;
  j.eqns.push_back(std::move(e));
  return o;
}
}  // namespace prim

namespace jaxpr_detail {

Trace::Trace() {
  if (t_jaxpr) throw std::invalid_argument("make_jaxpr: nested make_jaxpr is not supported yet");
  t_jaxpr = new Jaxpr();
  ++prim::detail::t_tracing;
}
Trace::~Trace() {
  --prim::detail::t_tracing;
  delete t_jaxpr;
  t_jaxpr = nullptr;
}

Array Trace::input(const Array& like) {
  Array v = new_var(*t_jaxpr, like.shape(), like.dtype());
  t_jaxpr->invars.push_back(v.node()->ir_var);
  return v;
}

Jaxpr Trace::finish(const std::vector<Array>& outputs) {
  for (const Array& y : outputs) {
    if (!prim::traced(y))  // an output that is a constant of f
      throw std::invalid_argument("make_jaxpr: an output does not depend on the inputs");
    t_jaxpr->outvars.push_back(y.node()->ir_var);
  }
  return *t_jaxpr;
}

}  // namespace jaxpr_detail

std::string Jaxpr::str() const {
  // Variables are numbered in creation order; print them in order of appearance.
  std::vector<int> rename(vars.size(), -1);
  int next = 0;
  auto name = [&](int id) {
    if (rename[static_cast<size_t>(id)] < 0) rename[static_cast<size_t>(id)] = next++;
    return var_name(rename[static_cast<size_t>(id)]);
  };
  auto typed = [&](int id) { return name(id) + ":" + type_of(vars[static_cast<size_t>(id)]); };
  std::string s = "{ lambda ";
  for (size_t i = 0; i < constvars.size(); ++i) s += (i ? " " : "") + typed(constvars[i]);
  s += constvars.empty() ? "; " : " ; ";
  for (size_t i = 0; i < invars.size(); ++i) s += (i ? " " : "") + typed(invars[i]);
  s += ". let";
  for (const Eqn& e : eqns) {
    std::string rhs = e.prim + (e.params.empty() ? "" : "[" + e.params + "]");
    for (const Atom& a : e.ins) rhs += " " + (a.var >= 0 ? name(a.var) : a.literal);
    s += " " + typed(e.out) + " = " + rhs;
  }
  s += " in (";
  for (size_t i = 0; i < outvars.size(); ++i) s += (i ? ", " : "") + name(outvars[i]);
  return s + ") }";
}

std::ostream& operator<<(std::ostream& os, const Jaxpr& j) { return os << j.str(); }

}  // namespace flaxpp
