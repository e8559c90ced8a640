// Checkpoints of parameter trees: Flax's msgpack (flax.serialization) and JSON state dicts.
//
//   std::vector<uint8_t> b = to_bytes(variables);          // == flax.serialization.to_bytes
//   Tree any = from_bytes(b);                              // msgpack_restore: the file's tree
//   Tree v = from_bytes(target, b);                        // restore, validated against target
//   std::string j = to_json(variables);                    // {"params": {"kernel": [[0.5, ...
//   Tree w = from_json(target, j, {.allow_extra = true});  // ignore keys the target lacks
//   save("ckpt/model.msgpack", variables);                 // atomic; format by extension
//   Tree r = load("ckpt/model.json", target);
//
// msgpack (byte-compatible with flax.serialization.to_bytes / msgpack_restore):
// - dicts are maps in insertion order; keys are str (fixstr, str8, ...).
// - an array is ExtType 1 whose payload is msgpack (shape as an array of uints, dtype name str,
//   C-order native little-endian bytes as bin): `c7 21 01 93 91 05 a7 "float32" c4 14 <20 B>`.
//   Scalars (shape ()) are arrays too (a jax.Array scalar); ExtType 3 (numpy scalar) is read.
// - an array larger than max_chunk_size bytes (Flax's MAX_CHUNK_SIZE = 2^30) is written as
//   {'__msgpack_chunked_array__': True, 'shape': {'0': d0, ...}, 'chunks': {'0': flat, ...}}
//   with chunks of max_chunk_size / itemsize elements, and read back into one array.
// - reading also accepts plain msgpack bool / int / float values (Python scalars in a state
//   dict) as scalar leaves: bool, int32 (uint32 above INT32_MAX), float32.
// - dtypes: float32, int32, uint32, bool. Other dtypes (float64, bfloat16, ...) are an error.
// - limits on reading: rank <= 8; nonzero dimensions multiply to < 2^60; an empty array's to at
//   most kMaxEmptyExtent (2^24); maps nest <= 256 deep. Every declared length or entry count is
//   checked against the bytes left before anything is allocated ("truncated input (...)").
//
// JSON (what Python's json.dumps(jax.tree_util.tree_map(lambda x: np.asarray(x).tolist(), v))
// writes, so `jax.tree_util.tree_map(jnp.asarray, json.load(f))` restores it in Flax):
// - dicts are objects ({"a": 1, "b": 2}: Python's ", " and ": " separators, one line); a leaf is
//   a nested list of numbers, a scalar a plain number. Keys are escaped like Python's
//   ensure_ascii (non-ASCII as \uXXXX). Key order is insertion order; JsonOptions::sort_keys
//   gives the exact bytes of the Python idiom above (tree_map rebuilds dicts sorted).
// - float32 values are printed as Python prints the float64 they widen to (repr: shortest
//   round-trip digits, "1.0", "1e-05", "3.4028234663852886e+38"), so they round-trip bit-exactly
//   (-0.0, denormals, max/min included). NaN / Infinity / -Infinity are written as Python does
//   (not strict JSON; JsonOptions{.allow_nan = false} throws instead). NaN payloads are not kept.
// - int32 / uint32 as integers, bool as true/false.
// - reading without a target infers dtypes per leaf: true/false -> bool; any number with '.',
//   'e', NaN or Infinity -> float32 (numbers are parsed as float64 and rounded, as numpy does);
//   otherwise int32, or uint32 if a value exceeds INT32_MAX. Empty lists give a 0 dimension
//   ([] -> (0,), [[], []] -> (2, 0)).
// - reading with a target checks the inferred dtype against it, strictly: integer literals for
//   a float32 leaf ("dtype int32 in file, float32 in target"), floats for an int leaf, numbers
//   for a bool leaf are errors; integer literals fit int32 and uint32 leaves (range-checked).
//   An empty list matches a target shape with a 0 dimension, e.g. [] for (0, 3).
// - limits on reading: objects nest <= 256 deep, lists <= 8 (an array's rank).
//
// Restoring against a target (from_bytes / from_json / load with a target, from_state_dict) is
// strict: a key missing from the file, a key the target lacks (unless allow_extra), an array
// where the target has a dict (or the reverse), or a shape or dtype mismatch throws
// SerializationError naming the '/'-path and both sides:
//   "restore: params/Dense_0/kernel: shape (4,3) in file, (3,3) in target"
// The result has the target's key order. Malformed input throws SerializationError too
// ("from_bytes: params/kernel: ...", "from_json: line 3, column 7: ...").
//
// save() is atomic: it writes a temporary file in the same directory, fsyncs it, renames it over
// `path` and fsyncs the directory. On any failure (missing directory, disk full, a serialization
// error midway) it throws SerializationError naming the path, removes the temporary file and
// leaves an existing file at `path` untouched. A process killed mid-save can leave a
// `.NAME.tmp-PID-XXXXXXXX` file beside `path`; it is never read and never replaces `path`.
//
// The `.meta` sidecar (`ckpt.msgpack.meta` beside `ckpt.msgpack`), so the file itself stays what
// Flax and Python write and read: a JSON object
//   {"flaxpp_meta": 1, "bytes": 1234, "crc32c": "e3069283", "dtypes": {"rng": "uint32(2,)"}}
// - "crc32c" (serialization/checksum.hpp) of the whole file, written when
//   SaveOptions::checksum is set (training checkpoints set it); load() verifies it and the byte
//   count, and a mismatch is a SerializationError ("checksum mismatch") naming the file.
// - "dtypes": for a JSON file, each leaf whose values alone do not give back its dtype and
//   shape (uint32 leaves whose values all fit int32, arrays with no elements), as
//   "<dtype><shape>"; load() restores them exactly, so every format round trip is lossless.
// save() writes the sidecar only when it has something to say, and removes a stale one first,
// so a file and a sidecar from different saves are never seen together (a kill in between
// leaves the new file without its sidecar: still readable, without the check). A file without
// a sidecar (Flax's, older flaxpp's) loads as before.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/tree.hpp"

namespace flaxpp {

class SerializationError : public Error {
 public:
  using Error::Error;
};

// flax.serialization.MAX_CHUNK_SIZE: arrays above this many bytes are chunked.
inline constexpr size_t kMaxChunkSize = size_t{1} << 30;
// from_bytes rejects an array with no elements whose nonzero dimensions multiply to more than
// this: (2^40, 0) costs a file 20 bytes, but to_json would write 2^40 "[]".
inline constexpr uint64_t kMaxEmptyExtent = uint64_t{1} << 24;

// Receives a writer's output in pieces, in order.
using ByteSink = std::function<void(const char* data, size_t size)>;

struct RestoreOptions {
  bool allow_extra = false;  // ignore file keys the target does not have
};

struct JsonOptions {
  bool sort_keys = false;  // Python's json.dumps(..., sort_keys=True) / JAX's tree_map order
  bool allow_nan = true;   // write NaN / Infinity like Python; false: throw naming the path
};

// ---- msgpack -------------------------------------------------------------------------------
std::vector<uint8_t> to_bytes(const Tree& tree, size_t max_chunk_size = kMaxChunkSize);
Tree from_bytes(std::span<const uint8_t> bytes);
Tree from_bytes(const Tree& target, std::span<const uint8_t> bytes,
                const RestoreOptions& opts = {});

// ---- JSON ----------------------------------------------------------------------------------
std::string to_json(const Tree& tree, const JsonOptions& opts = {});
Tree from_json(std::string_view text);
Tree from_json(const Tree& target, std::string_view text, const RestoreOptions& opts = {});

// ---- safetensors ---------------------------------------------------------------------------
// Hugging Face's format (see safetensors.cpp for the layout and the checks on reading). Nested
// keys are joined with `separator`: '.' as Hugging Face names weights
// ("params.Dense_0.kernel"), or '/' as Flax's flatten_dict. Dtypes: F32, I32, U32, BOOL.
struct SafetensorsOptions {
  char separator = '.';
  std::map<std::string, std::string> metadata;  // written as "__metadata__"
};
struct Safetensors {
  Tree tree;
  std::map<std::string, std::string> metadata;  // the file's "__metadata__" (empty if none)
};
std::vector<uint8_t> to_safetensors(const Tree& tree, const SafetensorsOptions& opts = {});
void write_safetensors(const Tree& tree, const ByteSink& sink, const SafetensorsOptions& opts = {});
Safetensors read_safetensors(std::span<const uint8_t> bytes, char separator = '.');
Tree from_safetensors(std::span<const uint8_t> bytes, char separator = '.');
Tree from_safetensors(const Tree& target, std::span<const uint8_t> bytes,
                      const RestoreOptions& opts = {}, char separator = '.');
// A file with its metadata; the file is memory-mapped and each tensor's pages are released once
// copied, so loading needs about the tree's size in memory.
Safetensors load_safetensors(const std::filesystem::path& path, char separator = '.');

// flax.serialization.from_state_dict, strict (see above): `state` with `target`'s structure,
// key order and validation.
Tree from_state_dict(const Tree& target, const Tree& state, const RestoreOptions& opts = {});

// ---- files ---------------------------------------------------------------------------------
enum class Format { json, msgpack, safetensors };
// ".json", ".msgpack", ".safetensors"; anything else throws SerializationError.
Format format_of(const std::filesystem::path& path);

struct SaveOptions {
  JsonOptions json{};
  size_t max_chunk_size = kMaxChunkSize;
  SafetensorsOptions safetensors{};
  bool checksum = false;  // write the file's CRC32C into its `.meta` sidecar
};
void save(const std::filesystem::path& path, const Tree& tree, const SaveOptions& opts = {});
Tree load(const std::filesystem::path& path);
Tree load(const std::filesystem::path& path, const Tree& target, const RestoreOptions& opts = {});
// The sidecar of `path` (path + ".meta").
std::filesystem::path meta_path(const std::filesystem::path& path);
// Checks `path` against the checksum in its sidecar: "" when it matches, else why not ("no
// checksum" when there is no sidecar or it has none). Reads the whole file.
std::string verify_checksum(const std::filesystem::path& path);

// For JSON: each leaf of `tree` whose values alone do not give back its dtype and shape, as
// {path, "<dtype><shape>"}; and the tree read from JSON with those restored (SerializationError
// naming the path when an entry does not fit the leaf).
std::vector<std::pair<std::string, std::string>> json_dtype_notes(const Tree& tree);
Tree apply_json_dtype_notes(const Tree& tree,
                            const std::vector<std::pair<std::string, std::string>>& notes);

// Streaming writers used by save() and to_json() / to_bytes(): `sink` receives the output in
// pieces, in order (ByteSink is declared above).
void write_json(const Tree& tree, const ByteSink& sink, const JsonOptions& opts = {});
void write_msgpack(const Tree& tree, const ByteSink& sink, size_t max_chunk_size = kMaxChunkSize);

}  // namespace flaxpp
