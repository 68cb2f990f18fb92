#include "harness/npy.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <algorithm>
#include <functional>

#include <sys/stat.h>

#include "harness/atomic_file.h"
#include "kernels/checked.h"
#include "kernels/input_error.h"

namespace longattn {

namespace {

// The header is a Python dict literal, as numpy.save writes it:
//   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// parsed strictly by hand: no backtracking regex (a long header must not blow the stack), every
// dimension range-checked, nothing ignored.
struct Header {
  std::string descr;
  bool fortran_order = false;
  std::vector<int64_t> shape;
};

Header parse_header(const std::string& h, const std::function<InputError(const std::string&)>& fail) {
  size_t at = 0;
  auto skip = [&] { while (at < h.size() && (h[at] == ' ' || h[at] == '\n' || h[at] == '\t')) ++at; };
  auto expect = [&](char c, const char* what) {
    skip();
    if (at >= h.size() || h[at] != c) throw fail(std::string("malformed header: expected ") + what);
    ++at;
  };
  auto quoted = [&]() {
    skip();
    if (at >= h.size() || (h[at] != '\'' && h[at] != '"')) throw fail("malformed header: expected a quoted string");
    const char q = h[at++];
    const size_t end = h.find(q, at);
    if (end == std::string::npos || end - at > 32) throw fail("malformed header: unterminated or long string");
    std::string s = h.substr(at, end - at);
    at = end + 1;
    return s;
  };
  Header out;
  bool seen[3] = {false, false, false};
  expect('{', "'{'");
  for (;;) {
    skip();
    if (at < h.size() && h[at] == '}') { ++at; break; }
    const std::string key = quoted();
    expect(':', "':'");
    skip();
    if (key == "descr" && !seen[0]) {
      out.descr = quoted(), seen[0] = true;
    } else if (key == "fortran_order" && !seen[1]) {
      if (h.compare(at, 4, "True") == 0) out.fortran_order = true, at += 4;
      else if (h.compare(at, 5, "False") == 0) at += 5;
      else throw fail("malformed header: fortran_order must be True or False");
      seen[1] = true;
    } else if (key == "shape" && !seen[2]) {
      expect('(', "'(' opening the shape");
      for (;;) {
        skip();
        if (at < h.size() && h[at] == ')') { ++at; break; }
        if (at >= h.size() || h[at] < '0' || h[at] > '9')
          throw fail("shape: dimensions must be non-negative integers");
        int64_t v = 0;
        while (at < h.size() && h[at] >= '0' && h[at] <= '9') {
          if (v > (kMaxElements - (h[at] - '0')) / 10) throw fail("shape: a dimension is too large");
          v = v * 10 + (h[at++] - '0');
        }
        out.shape.push_back(v);
        if (out.shape.size() > 8) throw fail("shape: more than 8 dimensions");
        skip();
        if (at < h.size() && h[at] == ',') { ++at; continue; }
        expect(')', "',' or ')' in the shape");
        break;
      }
      seen[2] = true;
    } else {
      throw fail("malformed header: unexpected or repeated key '" + key + "'");
    }
    skip();
    if (at < h.size() && h[at] == ',') ++at;
  }
  skip();
  if (at != h.size()) throw fail("malformed header: text after the closing '}'");
  if (!seen[0] || !seen[1] || !seen[2]) throw fail("malformed header: needs descr, fortran_order and shape");
  return out;
}

}  // namespace

NpyArray read_npy(const std::string& path) {
  const std::string shown = path.size() > 100 ? path.substr(0, 100) + "..." : path;
  auto fail = [&](const std::string& why) { return InputError(shown + ": " + why); };
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) throw fail("cannot open; check the path");
  if (!S_ISREG(st.st_mode)) throw fail("not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw fail("cannot open; check the path");
  char magic[8];
  if (!in.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0)
    throw fail("not a .npy file (bad magic); save it with numpy.save");
  const int major = static_cast<unsigned char>(magic[6]);
  uint32_t header_len = 0;
  size_t prefix = 8;
  if (major == 1) {
    unsigned char b[2];
    if (!in.read(reinterpret_cast<char*>(b), 2)) throw fail("truncated header");
    header_len = b[0] | (b[1] << 8);
    prefix += 2;
  } else if (major == 2 || major == 3) {
    unsigned char b[4];
    if (!in.read(reinterpret_cast<char*>(b), 4)) throw fail("truncated header");
    header_len = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
    prefix += 4;
  } else {
    throw fail("unsupported .npy version " + std::to_string(major));
  }
  constexpr uint32_t kMaxHeader = 64 * 1024;
  if (header_len > kMaxHeader)
    throw fail("header of " + std::to_string(header_len) + " bytes; longattn reads headers up to 65536 bytes");
  std::string header(header_len, '\0');
  if (!in.read(header.data(), header_len)) throw fail("truncated header");
  const Header h = parse_header(header, fail);
  if (h.descr != "<f4" && h.descr != "<f8")
    throw fail("dtype " + h.descr + " is not supported; convert with .astype(numpy.float32)");
  if (h.fortran_order) throw fail("Fortran order is not supported; save numpy.ascontiguousarray(x)");
  NpyArray a;
  a.shape = h.shape;
  int64_t count = 1;
  for (int64_t s : a.shape) count = checked_mul(count, s, shown + ": shape");
  const size_t item = h.descr == "<f4" ? 4 : 8;
  const int64_t bytes = checked_mul(count, static_cast<int64_t>(item), shown + ": shape", INT64_MAX / 2);
  const int64_t have = static_cast<int64_t>(st.st_size) - static_cast<int64_t>(prefix + header_len);
  if (have < bytes)
    throw fail("truncated data: expected " + std::to_string(bytes) + " bytes for the shape in the header, found " +
               std::to_string(std::max<int64_t>(have, 0)));
  if (have > bytes)
    throw fail(std::to_string(have - bytes) + " bytes after the data the header describes; the file is not one array");
  std::vector<char> raw(static_cast<size_t>(bytes));
  if (!in.read(raw.data(), static_cast<std::streamsize>(raw.size()))) throw fail("truncated data");
  a.data.resize(static_cast<size_t>(count));
  if (item == 4) {
    if (!raw.empty()) std::memcpy(a.data.data(), raw.data(), raw.size());  // an empty array has no buffer
  } else {
    for (int64_t i = 0; i < count; ++i) {
      double x;
      std::memcpy(&x, raw.data() + i * 8, 8);
      a.data[i] = static_cast<float>(x);
    }
  }
  return a;
}

void write_npy(const std::string& path, const std::vector<int64_t>& shape, const float* data) {
  AtomicFile f(path);
  write_npy(f, shape, data);
  f.commit();
}

void write_npy(AtomicFile& f, const std::vector<int64_t>& shape, const float* data) {
  std::string dims;
  int64_t count = 1;
  for (int64_t s : shape) dims += std::to_string(s) + ", ", count *= s;
  if (shape.size() > 1) dims.resize(dims.size() - 1);  // "(2, 3)" but "(2,)"
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  const size_t unpadded = 10 + header.size() + 1;
  header += std::string((64 - unpadded % 64) % 64, ' ') + "\n";
  const uint16_t len = static_cast<uint16_t>(header.size());
  const char prefix[10] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  f.write(prefix, sizeof prefix);
  f.write(header);
  f.write(data, static_cast<size_t>(count) * sizeof(float));
}

}  // namespace longattn
