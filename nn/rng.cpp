#include "nn/rng.hpp"

#include <atomic>
#include <cstring>
#include <stdexcept>

namespace flaxpp::nn {

const char* compat_name(Compat c) {
  switch (c) {
    case Compat::current: return "current";
    case Compat::v2024: return "2024";
    case Compat::v2021: return "2021";
  }
  return "?";
}

Compat compat_from_name(const std::string& name) {
  if (name == "current") return Compat::current;
  if (name == "2024") return Compat::v2024;
  if (name == "2021") return Compat::v2021;
  throw std::invalid_argument("unknown compatibility profile '" + name +
                              "' (expected current, 2024 or 2021)");
}

random::BitsMode bits_mode_of(Compat c) {
  return c == Compat::current ? random::BitsMode::partitionable : random::BitsMode::legacy;
}

namespace {
std::atomic<Compat> g_default{Compat::current};
}
Compat default_compat() { return g_default.load(); }
void set_default_compat(Compat c) { g_default.store(c); }

std::array<uint8_t, 20> sha1(std::string_view data) {
  uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
  auto rotl = [](uint32_t x, int r) { return (x << r) | (x >> (32 - r)); };
  std::string msg(data);
  uint64_t bit_len = static_cast<uint64_t>(data.size()) * 8;
  msg.push_back(static_cast<char>(0x80));
  while (msg.size() % 64 != 56) msg.push_back('\0');
  for (int i = 7; i >= 0; --i) msg.push_back(static_cast<char>((bit_len >> (8 * i)) & 0xFF));
  for (size_t off = 0; off < msg.size(); off += 64) {
    uint32_t w[80];
    for (int i = 0; i < 16; ++i) {
      const auto* p = reinterpret_cast<const uint8_t*>(msg.data() + off + 4 * i);
      w[i] = (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3];
    }
    for (int i = 16; i < 80; ++i) w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; ++i) {
      uint32_t f, k;
      if (i < 20)
        f = (b & c) | (~b & d), k = 0x5A827999u;
      else if (i < 40)
        f = b ^ c ^ d, k = 0x6ED9EBA1u;
      else if (i < 60)
        f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDCu;
      else
        f = b ^ c ^ d, k = 0xCA62C1D6u;
      uint32_t t = rotl(a, 5) + f + e + k + w[i];
      e = d, d = c, c = rotl(b, 30), b = a, a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
  }
  std::array<uint8_t, 20> out{};
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 4; ++j) out[4 * i + j] = static_cast<uint8_t>(h[i] >> (24 - 8 * j));
  return out;
}

uint32_t sha1_prefix32(std::string_view data) {
  auto d = sha1(data);
  return (uint32_t(d[0]) << 24) | (uint32_t(d[1]) << 16) | (uint32_t(d[2]) << 8) | d[3];
}

random::Key derive_key(Compat compat, random::Key root, const std::vector<std::string>& path,
                       uint32_t counter) {
  if (compat == Compat::v2021) {
    random::Key k = root;
    for (const auto& name : path) k = random::fold_in(k, sha1_prefix32(name));
    return random::fold_in(k, counter);
  }
  // Lazy rng: strings feed their UTF-8 bytes, ints their minimal big-endian bytes.
  std::string data;
  for (const auto& name : path) data += name;
  std::string be;
  for (uint32_t c = counter; c; c >>= 8) be.insert(be.begin(), static_cast<char>(c & 0xFF));
  data += be;
  return random::fold_in(root, sha1_prefix32(data));
}

}  // namespace flaxpp::nn
