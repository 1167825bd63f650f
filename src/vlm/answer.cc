#include "vlm/answer.h"

#include <algorithm>
#include <cctype>
#include <cmath>

namespace zeroqc {
namespace {

constexpr size_t kMaxAnswer = 1 << 20;
constexpr int kMaxDepth = 32;

bool IsSpace(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

// The content of the first ``` fence, or the text itself.
std::string_view Unfence(std::string_view t) {
  auto a = t.find("```");
  if (a == std::string_view::npos) return t;
  auto nl = t.find('\n', a);
  if (nl == std::string_view::npos) return t;
  auto b = t.find("```", nl);
  return t.substr(nl + 1, (b == std::string_view::npos ? t.size() : b) - nl - 1);
}

// The next character that is not whitespace, from i.
char NextNonSpace(std::string_view s, size_t i) {
  while (i < s.size() && IsSpace(s[i])) ++i;
  return i < s.size() ? s[i] : '\0';
}

// Rewrites pseudo-JSON into JSON: single-quoted strings become double-quoted, Python literals
// become JSON ones, trailing commas go. A single quote ends a string only when followed by
// , : } ] so that apostrophes inside words survive. Also finds the end of the first object.
StatusOr<std::string> Normalize(std::string_view s) {
  std::string out;
  int depth = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '"' || c == '\'') {
      const char q = c;
      out += '"';
      for (++i; i < s.size(); ++i) {
        char d = s[i];
        if (d == '\\' && i + 1 < s.size()) {
          if (s[i + 1] == '\'') out += '\'';
          else out += {d, s[i + 1]};
          ++i;
          continue;
        }
        if (d == q && (q == '"' || std::string_view(",:}]").find(NextNonSpace(s, i + 1)) != std::string_view::npos ||
                       NextNonSpace(s, i + 1) == '\0'))
          break;
        if (d == '"') out += "\\\"";
        else if (d == '\n') out += "\\n";
        else out += d;
      }
      out += '"';
      continue;
    }
    if (c == '{' || c == '[') {
      if (++depth > kMaxDepth) return InvalidArgument("answer nested deeper than 32 levels");
    } else if (c == '}' || c == ']') {
      while (!out.empty() && IsSpace(out.back())) out.pop_back();
      if (!out.empty() && out.back() == ',') out.pop_back();  // trailing comma
      out += c;
      if (--depth == 0) return out;
      continue;
    } else if (std::isalpha(static_cast<unsigned char>(c))) {
      size_t j = i;
      while (j < s.size() && std::isalnum(static_cast<unsigned char>(s[j]))) ++j;
      std::string_view word = s.substr(i, j - i);
      out += word == "True" ? "true" : word == "False" ? "false" : word == "None" ? "null" : std::string(word);
      i = j - 1;
      continue;
    }
    out += c;
  }
  return InvalidArgument("the JSON object in the answer is not closed");
}

double Number(const nlohmann::json& v) {
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    char* end = nullptr;
    double d = std::strtod(s.c_str(), &end);
    if (end != s.c_str()) return d;
  }
  return std::nan("");
}

std::string Text(const nlohmann::json& o, const char* key) {
  if (!o.contains(key) || o[key].is_null()) return "";
  return o[key].is_string() ? o[key].get<std::string>() : o[key].dump();
}

}  // namespace

StatusOr<nlohmann::json> ExtractJson(std::string_view text) {
  if (text.size() > kMaxAnswer) return InvalidArgument("answer longer than 1 MB");
  std::string_view body = Unfence(text);
  auto start = body.find('{');
  if (start == std::string_view::npos) {
    start = text.find('{');  // the fence held something else
    if (start == std::string_view::npos) return InvalidArgument("no JSON object in the answer");
    body = text;
  }
  auto norm = Normalize(body.substr(start));
  if (!norm.ok()) return norm.status();
  auto j = nlohmann::json::parse(*norm, nullptr, false);
  if (j.is_discarded()) return InvalidArgument("the answer's JSON does not parse");
  return j;
}

StatusOr<ModelAnswer> ParseAnswer(const nlohmann::json& j) {
  if (!j.is_object()) return InvalidArgument("the answer is not a JSON object");
  if (!j.contains("objects") || !j["objects"].is_array()) return InvalidArgument("the answer has no \"objects\" array");
  ModelAnswer a;
  a.text = Text(j, "text");
  for (const auto& o : j["objects"]) {
    if (!o.is_object()) return InvalidArgument("an item of \"objects\" is not an object");
    std::string qc = Text(o, "qc");
    std::transform(qc.begin(), qc.end(), qc.begin(), [](unsigned char c) { return std::toupper(c); });
    if (qc == "PASS") qc = "OK";
    if (qc == "FAIL") qc = "NOK";
    if (qc != "OK" && qc != "NOK") return InvalidArgument("an object's qc is '" + Text(o, "qc") + "', not OK or NOK");
    ModelObject m;
    m.object.name = Text(o, "name");
    m.object.color = Text(o, "color");
    m.object.reason = Text(o, "reason");
    m.object.qc = qc;
    const nlohmann::json* box = o.contains("bounding_box") ? &o["bounding_box"] : o.contains("box_2d") ? &o["box_2d"] : nullptr;
    if (box && !box->is_null()) {
      std::vector<double> v;
      if (box->is_object()) {
        m.box_named = true;
        for (const char* k : {"x_min", "y_min", "x_max", "y_max"}) v.push_back(box->contains(k) ? Number((*box)[k]) : std::nan(""));
      } else if (box->is_array() && box->size() == 4) {
        for (const auto& x : *box) v.push_back(Number(x));
      } else {
        return InvalidArgument("a bounding_box is neither {x_min,y_min,x_max,y_max} nor 4 numbers");
      }
      if (std::any_of(v.begin(), v.end(), [](double d) { return !std::isfinite(d); }))
        return InvalidArgument("a bounding_box holds something that is not a number");
      m.raw_box = v;
    }
    a.objects.push_back(std::move(m));
  }
  return a;
}

std::optional<BoundingBox> MapBox(const std::vector<double>& v, bool named, BoxFormat f, int sent_w, int sent_h, int W, int H) {
  double x0 = v[0], y0 = v[1], x1 = v[2], y1 = v[3];
  if (f == BoxFormat::kNorm1000Yx && !named) std::tie(x0, y0, x1, y1) = std::tuple{v[1], v[0], v[3], v[2]};
  double sx, sy;
  if (f == BoxFormat::kPixels) sx = double(W) / sent_w, sy = double(H) / sent_h;
  else sx = W / 1000.0, sy = H / 1000.0;
  x0 *= sx, x1 *= sx, y0 *= sy, y1 *= sy;
  if (x0 > x1) std::swap(x0, x1);
  if (y0 > y1) std::swap(y0, y1);
  BoundingBox b{int(std::floor(std::clamp(x0, 0.0, double(W)))), int(std::floor(std::clamp(y0, 0.0, double(H)))),
                int(std::ceil(std::clamp(x1, 0.0, double(W)))), int(std::ceil(std::clamp(y1, 0.0, double(H))))};
  if (b.x_max - b.x_min < 1 || b.y_max - b.y_min < 1) return std::nullopt;
  return b;
}

}  // namespace zeroqc
