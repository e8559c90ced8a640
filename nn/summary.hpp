// Flax's nn.tabulate (flax/linen/summary.py): how a call's inputs and outputs are described, and
// the table Module::tabulate renders from the calls of an init run.
#pragma once

#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/array.hpp"

namespace flaxpp::nn::detail {

// tabulate's text for a value, as Flax's summary renders it: "float32[16,9]" for an array,
// Python's repr for a scalar (True, 3, 0.5), a YAML list for several values; empty otherwise.
std::string describe(const Array& a);
std::string describe_float(double v);
std::string describe_float(float v);
template <class T>
std::string describe(const T& v) {
  if constexpr (std::is_same_v<T, bool>)
    return v ? "True" : "False";
  else if constexpr (std::is_integral_v<T>)
    return std::to_string(v);
  else if constexpr (std::is_floating_point_v<T>)
    return describe_float(v);
  else
    return "";
}
std::string describe(const std::vector<Array>& v);
std::string yaml_list_item(const std::string& s);  // "- " before line 1, "  " before the rest
// A call's inputs: one argument as itself, several as a YAML list ("- float32[1,3]\n- True").
template <class... A>
std::string describe_all(const A&... args) {
  if constexpr (sizeof...(A) == 1) {
    return describe(args...);
  } else {
    std::string r;
    ((r += (r.empty() ? "" : "\n") + yaml_list_item(describe(args))), ...);
    return r;
  }
}

// One module call, in the order calls began: its path, class name and described inputs/outputs.
struct SummaryRow {
  std::vector<std::string> path;
  std::string type_name, inputs, outputs;
};
// The box-drawn table of Flax's summary: a row per call with the parameters the module owns
// directly ("params" entries of `variables`, '/'-joined keys "params/<path>/<name>"), and totals.
std::string summary_table(const std::string& root_type, const std::vector<SummaryRow>& calls,
                          const std::vector<std::pair<std::string, Array>>& variables);

}  // namespace flaxpp::nn::detail
