#include "image/integrity.h"

// jpeglib.h needs size_t and FILE declared first.
#include <cstddef>
#include <cstdio>

#include <csetjmp>
#include <algorithm>
#include <string>

#include <jpeglib.h>
#include <png.h>

namespace zeroqc {
namespace {

// libjpeg: errors and warnings alike end the check (longjmp out), with the library's message.
struct JpegErrors {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX] = "";
};

[[noreturn]] void JpegFail(j_common_ptr info) {
  auto* e = reinterpret_cast<JpegErrors*>(info->err);
  info->err->format_message(info, e->message);
  std::longjmp(e->jump, 1);
}

void JpegMessage(j_common_ptr info, int level) {
  if (level < 0) JpegFail(info);  // a warning: corrupt or missing data was mended
}

Status CheckJpeg(std::span<const uint8_t> bytes) {
  jpeg_decompress_struct info{};
  JpegErrors errors{};
  info.err = jpeg_std_error(&errors.mgr);
  errors.mgr.error_exit = JpegFail;
  errors.mgr.emit_message = JpegMessage;
  // Nothing with a destructor lives past the setjmp (longjmp skips destructors): the row comes from
  // libjpeg's own pool, freed by jpeg_destroy_decompress.
  if (setjmp(errors.jump)) {
    jpeg_destroy_decompress(&info);
    return Corrupt(std::string("the jpeg data is damaged: ") + errors.message);
  }
  jpeg_create_decompress(&info);
  jpeg_mem_src(&info, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&info, TRUE);
  // Every coefficient is still entropy-decoded at 1/8 scale (that is where damage shows), but the
  // inverse DCT and colour work shrink to almost nothing.
  info.scale_num = 1, info.scale_denom = 8;
  info.dct_method = JDCT_IFAST;
  info.do_fancy_upsampling = FALSE;
  jpeg_start_decompress(&info);
  JSAMPARRAY rows = (*info.mem->alloc_sarray)(reinterpret_cast<j_common_ptr>(&info), JPOOL_IMAGE,
                                               info.output_width * JDIMENSION(info.output_components), 1);
  while (info.output_scanline < info.output_height) jpeg_read_scanlines(&info, rows, 1);
  jpeg_finish_decompress(&info);  // reads on to the end marker: trailing damage warns too
  jpeg_destroy_decompress(&info);
  return Status::Ok();
}

// libpng: the same, from memory.
struct PngInput {
  std::span<const uint8_t> bytes;
  size_t at = 0;
  char message[256] = "";
  png_bytep row = nullptr;  // png_malloc'd: freed on both paths (longjmp skips destructors)
};

[[noreturn]] void PngFail(png_structp png, png_const_charp message) {
  auto* in = static_cast<PngInput*>(png_get_error_ptr(png));
  std::snprintf(in->message, sizeof in->message, "%s", message);
  png_longjmp(png, 1);
}

void PngRead(png_structp png, png_bytep out, png_size_t n) {
  auto* in = static_cast<PngInput*>(png_get_io_ptr(png));
  if (in->bytes.size() - in->at < n) png_error(png, "the file ends early");
  std::copy_n(in->bytes.data() + in->at, n, out);
  in->at += n;
}

Status CheckPng(std::span<const uint8_t> bytes) {
  PngInput input{bytes};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &input, PngFail, PngFail);
  if (!png) return Internal("cannot start libpng");
  png_infop info = png_create_info_struct(png);
  if (!info || setjmp(png_jmpbuf(png))) {
    if (input.row) png_free(png, input.row);
    png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
    return Corrupt(std::string("the png data is damaged: ") + input.message);
  }
  png_set_read_fn(png, &input, PngRead);
  png_set_crc_action(png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);  // ancillary chunks too
  png_set_benign_errors(png, 0);                                     // "too much image data" and the like
  png_read_info(png, info);
  const int passes = png_set_interlace_handling(png);
  png_read_update_info(png, info);
  input.row = static_cast<png_bytep>(png_malloc(png, png_get_rowbytes(png, info)));
  const png_uint_32 height = png_get_image_height(png, info);
  for (int p = 0; p < passes; ++p)
    for (png_uint_32 y = 0; y < height; ++y) png_read_row(png, input.row, nullptr);
  png_read_end(png, info);  // the chunks after the image, their CRCs, and IEND
  png_free(png, input.row);
  png_destroy_read_struct(&png, &info, nullptr);
  return Status::Ok();
}

}  // namespace

Status CheckComplete(std::span<const uint8_t> bytes, const std::string& format) {
  if (format == "jpeg") return CheckJpeg(bytes);
  if (format == "png") return CheckPng(bytes);
  return Status::Ok();
}

}  // namespace zeroqc
