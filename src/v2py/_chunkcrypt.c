/*
 * v2py._chunkcrypt: optional accelerator for the VMess AEAD body (docs/spec/vmess.md 8.4-8.6).
 *
 * Seals and opens many AES-128-GCM / ChaCha20-Poly1305 chunks per call with one
 * reused EVP context of the system's libcrypto (loaded with dlopen, so no OpenSSL
 * headers or link-time library are needed to build).  The chunk layout (sizes,
 * SHAKE128 mask words, padding lengths and bytes) is exactly the pure-Python
 * writer/reader's in v2py/protocol/vmess/body.py, which stays the reference and the
 * fallback: if this module does not build, or libcrypto cannot be loaded, body.py
 * runs its own loops.
 *
 * Mask words are passed in as raw SHAKE128 output (big-endian 16-bit words): with
 * GlobalPadding each chunk uses two words (padding length = w0 % 64, then the size
 * mask w1), otherwise one (the size mask).  Without masking, pass None.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <string.h>

#define AEAD_TAG 16
#define NONCE_LEN 12
#define NONCE_TAIL 10
#define MAX_PADDING 64
#define EVP_CTRL_AEAD_GET_TAG 0x10
#define EVP_CTRL_AEAD_SET_TAG 0x11

typedef void *(*fn_ctx_new)(void);
typedef void (*fn_ctx_free)(void *);
typedef const void *(*fn_cipher)(void);
typedef int (*fn_init)(void *, const void *, void *, const unsigned char *, const unsigned char *);
typedef int (*fn_update)(void *, unsigned char *, int *, const unsigned char *, int);
typedef int (*fn_final)(void *, unsigned char *, int *);
typedef int (*fn_ctrl)(void *, int, int, void *);
typedef int (*fn_sha_init)(void *);
typedef int (*fn_sha_update)(void *, const void *, size_t);
typedef int (*fn_sha_final)(unsigned char *, void *);
typedef int (*fn_set_padding)(void *, int);
typedef unsigned long (*fn_crc32)(unsigned long, const unsigned char *, unsigned int);
typedef int (*fn_md5_init)(void *);
typedef int (*fn_md5_update)(void *, const void *, size_t);
typedef int (*fn_md5_final)(unsigned char *, void *);

static struct {
    int loaded;
    fn_ctx_new ctx_new;
    fn_ctx_free ctx_free;
    fn_cipher aes_128_gcm;
    fn_cipher chacha20_poly1305;
    fn_cipher aes_256_gcm; /* Shadowsocks only; NULL when missing */
    fn_init encrypt_init;
    fn_init decrypt_init;
    fn_update encrypt_update;
    fn_update decrypt_update;
    fn_final encrypt_final;
    fn_final decrypt_final;
    fn_ctrl ctrl;
    fn_sha_init sha_init;
    fn_sha_update sha_update;
    fn_sha_final sha_final;
    fn_cipher aes_128_ecb;
    fn_set_padding set_padding;
    fn_crc32 crc32; /* zlib's, for AuthTable; NULL when libz is missing */
    /* MD5_Init/Update/Final for LegacyTable; NULL when missing or when MD5_CTX does
     * not fit MD5_STATE_BYTES (see md5_state_fits) */
    fn_md5_init md5_init;
    fn_md5_update md5_update;
    fn_md5_final md5_final;
} evp;

static int md5_state_fits(void);

static const char *LIBCRYPTO_NAMES[] = {"libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.so", NULL};

static int
load_libcrypto(void)
{
    void *h = NULL;
    for (const char **name = LIBCRYPTO_NAMES; *name != NULL && h == NULL; name++) {
        h = dlopen(*name, RTLD_NOW | RTLD_LOCAL);
    }
    if (h == NULL) {
        return 0;
    }
#define SYM(field, name)                                   \
    *(void **)(&evp.field) = dlsym(h, name);               \
    if (evp.field == NULL) {                               \
        return 0;                                          \
    }
    SYM(ctx_new, "EVP_CIPHER_CTX_new");
    SYM(ctx_free, "EVP_CIPHER_CTX_free");
    SYM(aes_128_gcm, "EVP_aes_128_gcm");
    SYM(chacha20_poly1305, "EVP_chacha20_poly1305");
    SYM(encrypt_init, "EVP_EncryptInit_ex");
    SYM(decrypt_init, "EVP_DecryptInit_ex");
    SYM(encrypt_update, "EVP_EncryptUpdate");
    SYM(decrypt_update, "EVP_DecryptUpdate");
    SYM(encrypt_final, "EVP_EncryptFinal_ex");
    SYM(decrypt_final, "EVP_DecryptFinal_ex");
    SYM(ctrl, "EVP_CIPHER_CTX_ctrl");
    SYM(sha_init, "SHA256_Init");
    SYM(sha_update, "SHA256_Update");
    SYM(sha_final, "SHA256_Final");
    SYM(aes_128_ecb, "EVP_aes_128_ecb");
    SYM(set_padding, "EVP_CIPHER_CTX_set_padding");
#undef SYM
    *(void **)(&evp.aes_256_gcm) = dlsym(h, "EVP_aes_256_gcm");
    /* zlib's crc32 (the AuthID checksum): Python's own zlib module links the same library. */
    void *z = dlopen("libz.so.1", RTLD_NOW | RTLD_LOCAL);
    if (z == NULL) z = dlopen("libz.so", RTLD_NOW | RTLD_LOCAL);
    if (z != NULL) *(void **)(&evp.crc32) = dlsym(z, "crc32");
    /* Legacy VMess auths (HMAC-MD5): optional, LegacyTable refuses to build without. */
    *(void **)(&evp.md5_init) = dlsym(h, "MD5_Init");
    *(void **)(&evp.md5_update) = dlsym(h, "MD5_Update");
    *(void **)(&evp.md5_final) = dlsym(h, "MD5_Final");
    if (evp.md5_init == NULL || evp.md5_update == NULL || evp.md5_final == NULL
        || !md5_state_fits()) {
        evp.md5_init = NULL;
    }
    evp.loaded = 1;
    return 1;
}

/* ------------------------------------------------------------------ context */

typedef struct {
    PyObject_HEAD
    void *ctx;
    int encrypt;
} AeadObject;

static void
Aead_dealloc(AeadObject *self)
{
    if (self->ctx != NULL) {
        evp.ctx_free(self->ctx);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
Aead_init(AeadObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"cipher", "key", "encrypt", NULL};
    const char *cipher;
    Py_buffer key;
    int encrypt;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "sy*p", kwlist, &cipher, &key, &encrypt)) {
        return -1;
    }
    const void *c;
    Py_ssize_t want;
    if (strcmp(cipher, "aes-128-gcm") == 0) {
        c = evp.aes_128_gcm();
        want = 16;
    } else if (strcmp(cipher, "chacha20-poly1305") == 0) {
        c = evp.chacha20_poly1305();
        want = 32;
    } else if (strcmp(cipher, "aes-256-gcm") == 0 && evp.aes_256_gcm != NULL) {
        c = evp.aes_256_gcm();
        want = 32;
    } else {
        PyBuffer_Release(&key);
        PyErr_SetString(PyExc_ValueError,
                        "cipher must be aes-128-gcm, aes-256-gcm or chacha20-poly1305");
        return -1;
    }
    if (key.len != want || c == NULL) {
        PyBuffer_Release(&key);
        PyErr_SetString(PyExc_ValueError, "bad key length or cipher unavailable");
        return -1;
    }
    if (self->ctx == NULL) {
        self->ctx = evp.ctx_new();
    }
    int ok = self->ctx != NULL;
    if (ok) {
        ok = encrypt ? evp.encrypt_init(self->ctx, c, NULL, key.buf, NULL)
                     : evp.decrypt_init(self->ctx, c, NULL, key.buf, NULL);
    }
    PyBuffer_Release(&key);
    if (!ok) {
        PyErr_SetString(PyExc_RuntimeError, "libcrypto refused the cipher context");
        return -1;
    }
    self->encrypt = encrypt;
    return 0;
}

static inline unsigned int
word_at(const unsigned char *m, Py_ssize_t i)
{
    return ((unsigned int)m[2 * i] << 8) | m[2 * i + 1];
}

static inline int
seal_one(void *ctx, unsigned char *nonce, const unsigned char *in, int len, unsigned char *out)
{
    int n1 = 0, n2 = 0;
    if (!evp.encrypt_init(ctx, NULL, NULL, NULL, nonce)) return 0;
    if (len > 0 && !evp.encrypt_update(ctx, out, &n1, in, len)) return 0;
    if (!evp.encrypt_final(ctx, out + n1, &n2)) return 0;
    return evp.ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, AEAD_TAG, out + len) > 0;
}

static inline int
open_one(void *ctx, unsigned char *nonce, const unsigned char *in, int len, unsigned char *out)
{
    /* in: ciphertext (len bytes) || tag (16) */
    int n1 = 0, n2 = 0;
    if (!evp.decrypt_init(ctx, NULL, NULL, NULL, nonce)) return 0;
    if (evp.ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, AEAD_TAG, (void *)(in + len)) <= 0) return 0;
    if (len > 0 && !evp.decrypt_update(ctx, out, &n1, in, len)) return 0;
    return evp.decrypt_final(ctx, out + n1, &n2) > 0;
}

PyDoc_STRVAR(seal_doc,
"seal(data, step, nonce_tail, counter, masks, padding, rng) -> (bytearray, counter)\n\n"
"Seal ``data`` into ceil(len/step) chunks (empty data: one empty chunk, the end\n"
"marker): size (masked) || AEAD(payload) || padding.\n"
"``masks``: raw mask words (2 per chunk with padding, else 1) or None; ``rng(n)`` is\n"
"called once for all padding bytes (n = the sum of the padding lengths, if > 0).");

static PyObject *
Aead_seal(AeadObject *self, PyObject *args)
{
    Py_buffer data, tail, masks = {0}, pool = {0};
    Py_ssize_t step;
    unsigned long long counter;
    PyObject *masks_obj, *rng, *pool_obj = NULL;
    int padding;
    if (self->ctx == NULL) {
        PyErr_SetString(PyExc_ValueError, "context not initialised");
        return NULL;
    }
    if (!self->encrypt) {
        PyErr_SetString(PyExc_ValueError, "context was made for opening");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "y*ny*KOpO", &data, &step, &tail, &counter, &masks_obj,
                          &padding, &rng)) {
        return NULL;
    }
    PyObject *result = NULL;
    int have_masks = masks_obj != Py_None;
    if (have_masks && PyObject_GetBuffer(masks_obj, &masks, PyBUF_SIMPLE) < 0) {
        goto done_nomask;
    }
    Py_ssize_t n = data.len;
    if (step <= 0 || step > 0xFFFF - AEAD_TAG - MAX_PADDING || tail.len != NONCE_TAIL) {
        PyErr_SetString(PyExc_ValueError, "bad step or nonce tail");
        goto done;
    }
    /* Empty input: exactly one empty chunk (the end marker, spec 8.8). */
    Py_ssize_t nchunks = n == 0 ? 1 : (n + step - 1) / step;
    Py_ssize_t per = padding ? 2 : 1;
    if (have_masks && masks.len < 2 * per * nchunks) {
        PyErr_SetString(PyExc_ValueError, "not enough mask words");
        goto done;
    }
    if (padding && !have_masks) {
        PyErr_SetString(PyExc_ValueError, "padding needs masks");
        goto done;
    }
    const unsigned char *m = have_masks ? (const unsigned char *)masks.buf : NULL;
    Py_ssize_t pad_total = 0;
    if (padding) {
        for (Py_ssize_t i = 0; i < nchunks; i++) pad_total += word_at(m, 2 * i) % MAX_PADDING;
    }
    if (pad_total > 0) {
        pool_obj = PyObject_CallFunction(rng, "n", pad_total);
        if (pool_obj == NULL) goto done;
        if (PyObject_GetBuffer(pool_obj, &pool, PyBUF_SIMPLE) < 0) {
            Py_CLEAR(pool_obj);
            goto done;
        }
        if (pool.len < pad_total) {
            PyErr_SetString(PyExc_ValueError, "rng returned too few bytes");
            goto done;
        }
    }
    Py_ssize_t total = n + nchunks * (2 + AEAD_TAG) + pad_total;
    PyObject *outobj = PyByteArray_FromStringAndSize(NULL, total);
    if (outobj == NULL) goto done;
    unsigned char *out = (unsigned char *)PyByteArray_AS_STRING(outobj);
    const unsigned char *in = (const unsigned char *)data.buf;
    const unsigned char *pp = (const unsigned char *)pool.buf;
    unsigned char nonce[NONCE_LEN];
    memcpy(nonce + 2, tail.buf, NONCE_TAIL);
    Py_ssize_t pos = 0, off = 0;
    int ok = 1;
    for (Py_ssize_t i = 0; i < nchunks; i++) {
        Py_ssize_t plen = n - off > step ? step : n - off;
        unsigned int pad = 0, size_mask = 0;
        if (have_masks) {
            if (padding) {
                pad = word_at(m, 2 * i) % MAX_PADDING;
                size_mask = word_at(m, 2 * i + 1);
            } else {
                size_mask = word_at(m, i);
            }
        }
        unsigned int size = (unsigned int)(plen + AEAD_TAG + pad) ^ size_mask;
        out[pos] = (unsigned char)(size >> 8);
        out[pos + 1] = (unsigned char)size;
        pos += 2;
        nonce[0] = (unsigned char)((counter >> 8) & 0xFF);
        nonce[1] = (unsigned char)(counter & 0xFF);
        counter++;
        if (!seal_one(self->ctx, nonce, in + off, (int)plen, out + pos)) {
            ok = 0;
            break;
        }
        pos += plen + AEAD_TAG;
        off += plen;
        if (pad) {
            memcpy(out + pos, pp, pad);
            pp += pad;
            pos += pad;
        }
    }
    if (!ok) {
        Py_DECREF(outobj);
        PyErr_SetString(PyExc_RuntimeError, "libcrypto failed to seal a chunk");
        goto done;
    }
    result = Py_BuildValue("NK", outobj, counter);
done:
    if (have_masks) PyBuffer_Release(&masks);
    if (pool_obj != NULL) {
        PyBuffer_Release(&pool);
        Py_DECREF(pool_obj);
    }
done_nomask:
    PyBuffer_Release(&data);
    PyBuffer_Release(&tail);
    return result;
}

PyDoc_STRVAR(open_doc,
"open(data, pos, out, opos, nonce_tail, counter, masks, padding)\n"
"    -> (status, pos, opos, counter, words, size, pad)\n\n"
"Open complete chunks of ``data[pos:]`` into ``out[opos:]``.  status: 0 stopped at an\n"
"incomplete chunk (size >= 0: its size field was read, ``size``/``pad`` describe the\n"
"body still to come at ``pos``; size -1: fewer than 2 bytes left), 1 end marker seen\n"
"(pos just after it), 2 out of mask words (pos at the next size field), -1 a chunk\n"
"failed authentication, -2 a size smaller than overhead + padding.  ``words``: mask\n"
"words consumed.");

static PyObject *
Aead_open(AeadObject *self, PyObject *args)
{
    Py_buffer data, out, tail, masks = {0};
    Py_ssize_t pos, opos;
    unsigned long long counter;
    PyObject *masks_obj;
    int padding;
    if (self->ctx == NULL) {
        PyErr_SetString(PyExc_ValueError, "context not initialised");
        return NULL;
    }
    if (self->encrypt) {
        PyErr_SetString(PyExc_ValueError, "context was made for sealing");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "y*nw*ny*KOp", &data, &pos, &out, &opos, &tail, &counter,
                          &masks_obj, &padding)) {
        return NULL;
    }
    PyObject *result = NULL;
    int have_masks = masks_obj != Py_None;
    if (have_masks && PyObject_GetBuffer(masks_obj, &masks, PyBUF_SIMPLE) < 0) {
        goto done_nomask;
    }
    if (tail.len != NONCE_TAIL || pos < 0 || opos < 0 || pos > data.len || opos > out.len) {
        PyErr_SetString(PyExc_ValueError, "bad nonce tail or offsets");
        goto done;
    }
    const unsigned char *in = (const unsigned char *)data.buf;
    unsigned char *o = (unsigned char *)out.buf;
    const unsigned char *m = have_masks ? (const unsigned char *)masks.buf : NULL;
    Py_ssize_t nwords = have_masks ? masks.len / 2 : 0;
    Py_ssize_t per = padding ? 2 : 1;
    Py_ssize_t end = data.len, wi = 0;
    long size = -1, pad = 0;
    int status = 0;
    unsigned char nonce[NONCE_LEN];
    memcpy(nonce + 2, tail.buf, NONCE_TAIL);
    while (1) {
        if (end - pos < 2) {
            size = -1;
            status = 0;
            break;
        }
        if (have_masks && wi + per > nwords) {
            size = -1;
            status = 2;
            break;
        }
        pad = 0;
        size = ((long)in[pos] << 8) | in[pos + 1];
        if (have_masks) {
            if (padding) {
                pad = word_at(m, wi) % MAX_PADDING;
                size ^= word_at(m, wi + 1);
            } else {
                size ^= word_at(m, wi);
            }
            wi += per;
        }
        pos += 2;
        if (size <= AEAD_TAG + pad) {
            status = size == AEAD_TAG + pad ? 1 : -2;
            break;
        }
        if (end - pos < size) {
            status = 0;
            break;
        }
        Py_ssize_t plen = size - pad - AEAD_TAG;
        if (opos + plen > out.len) {
            PyErr_SetString(PyExc_ValueError, "output buffer too small");
            goto done;
        }
        nonce[0] = (unsigned char)((counter >> 8) & 0xFF);
        nonce[1] = (unsigned char)(counter & 0xFF);
        if (!open_one(self->ctx, nonce, in + pos, (int)plen, o + opos)) {
            status = -1;
            break;
        }
        counter++;
        opos += plen;
        pos += size;
    }
    result = Py_BuildValue("innKnll", status, pos, opos, counter, wi, size, pad);
done:
    if (have_masks) PyBuffer_Release(&masks);
done_nomask:
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    PyBuffer_Release(&tail);
    return result;
}

/* ------------------------------------------------------- Shadowsocks chunks */

/* The Shadowsocks AEAD nonce: a 12-byte little-endian counter (its top 4 bytes stay 0). */
static inline void
le_nonce(unsigned char *nonce, unsigned long long counter)
{
    for (int i = 0; i < 8; i++) nonce[i] = (unsigned char)(counter >> (8 * i));
    memset(nonce + 8, 0, NONCE_LEN - 8);
}

PyDoc_STRVAR(ss_seal_doc,
"ss_seal(data, step, counter) -> (bytearray, counter)\n\n"
"Seal ``data`` as Shadowsocks chunks of at most ``step`` payload bytes: AEAD(2-byte\n"
"big-endian length) || AEAD(payload), one nonce step per seal from ``counter``.\n"
"Empty data gives no chunk.");

static PyObject *
Aead_ss_seal(AeadObject *self, PyObject *args)
{
    Py_buffer data;
    Py_ssize_t step;
    unsigned long long counter;
    if (self->ctx == NULL || !self->encrypt) {
        PyErr_SetString(PyExc_ValueError, "context not made for sealing");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "y*nK", &data, &step, &counter)) {
        return NULL;
    }
    PyObject *result = NULL;
    if (step <= 0 || step > 0x3FFF) {
        PyErr_SetString(PyExc_ValueError, "bad step");
        goto done;
    }
    Py_ssize_t n = data.len;
    Py_ssize_t nchunks = (n + step - 1) / step;
    PyObject *outobj = PyByteArray_FromStringAndSize(NULL, n + nchunks * (2 + 2 * AEAD_TAG));
    if (outobj == NULL) goto done;
    unsigned char *out = (unsigned char *)PyByteArray_AS_STRING(outobj);
    const unsigned char *in = (const unsigned char *)data.buf;
    unsigned char nonce[NONCE_LEN], size[2];
    Py_ssize_t pos = 0;
    for (Py_ssize_t off = 0; off < n; off += step) {
        Py_ssize_t plen = n - off > step ? step : n - off;
        size[0] = (unsigned char)(plen >> 8);
        size[1] = (unsigned char)plen;
        le_nonce(nonce, counter++);
        if (!seal_one(self->ctx, nonce, size, 2, out + pos)) goto failed;
        pos += 2 + AEAD_TAG;
        le_nonce(nonce, counter++);
        if (!seal_one(self->ctx, nonce, in + off, (int)plen, out + pos)) goto failed;
        pos += plen + AEAD_TAG;
    }
    result = Py_BuildValue("NK", outobj, counter);
    goto done;
failed:
    Py_DECREF(outobj);
    PyErr_SetString(PyExc_RuntimeError, "libcrypto failed to seal a chunk");
done:
    PyBuffer_Release(&data);
    return result;
}

PyDoc_STRVAR(ss_open_doc,
"ss_open(data, pos, out, opos, counter) -> (status, pos, opos, counter)\n\n"
"Open complete Shadowsocks chunks of ``data[pos:]`` into ``out[opos:]``.  status: 0\n"
"stopped at an incomplete chunk (``pos`` at its start: its length is opened again\n"
"next time), 1 a zero-length chunk, the end (``pos`` after it), -1 a tag did not\n"
"verify, 2 ``out`` is full.");

static PyObject *
Aead_ss_open(AeadObject *self, PyObject *args)
{
    Py_buffer data, out;
    Py_ssize_t pos, opos;
    unsigned long long counter;
    if (self->ctx == NULL || self->encrypt) {
        PyErr_SetString(PyExc_ValueError, "context not made for opening");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "y*nw*nK", &data, &pos, &out, &opos, &counter)) {
        return NULL;
    }
    const unsigned char *in = (const unsigned char *)data.buf;
    unsigned char *o = (unsigned char *)out.buf;
    unsigned char nonce[NONCE_LEN], size[2];
    int status = 0;
    if (pos < 0 || opos < 0 || pos > data.len || opos > out.len) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&out);
        PyErr_SetString(PyExc_ValueError, "bad offsets");
        return NULL;
    }
    while (data.len - pos >= 2 + AEAD_TAG) {
        le_nonce(nonce, counter);
        if (!open_one(self->ctx, nonce, in + pos, 2, size)) {
            status = -1;
            break;
        }
        Py_ssize_t plen = ((Py_ssize_t)size[0] << 8) | size[1];
        if (plen == 0) {
            counter++;
            pos += 2 + AEAD_TAG;
            status = 1;
            break;
        }
        if (data.len - pos - 2 - AEAD_TAG < plen + AEAD_TAG) break;
        if (out.len - opos < plen) {
            status = 2;
            break;
        }
        le_nonce(nonce, counter + 1);
        if (!open_one(self->ctx, nonce, in + pos + 2 + AEAD_TAG, (int)plen, o + opos)) {
            status = -1;
            break;
        }
        counter += 2;
        pos += 2 + 2 * AEAD_TAG + plen;
        opos += plen;
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    return Py_BuildValue("innK", status, pos, opos, counter);
}

static PyMethodDef Aead_methods[] = {
    {"seal", (PyCFunction)Aead_seal, METH_VARARGS, seal_doc},
    {"open", (PyCFunction)Aead_open, METH_VARARGS, open_doc},
    {"ss_seal", (PyCFunction)Aead_ss_seal, METH_VARARGS, ss_seal_doc},
    {"ss_open", (PyCFunction)Aead_ss_open, METH_VARARGS, ss_open_doc},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject AeadType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "v2py._chunkcrypt.Aead",
    .tp_basicsize = sizeof(AeadObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Aead(cipher, key, encrypt): one reused libcrypto AEAD context.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Aead_init,
    .tp_dealloc = (destructor)Aead_dealloc,
    .tp_methods = Aead_methods,
};


/* ------------------------------------------------------------------ AuthTable (docs/spec/vmess.md 5.3) */

/* The AEAD AuthID lookup of a VMess server: each user's AuthID key, and one scan
 * per connection that decrypts the AuthID under every key in a C loop. With AES-NI
 * (checked at run time) a key is 11 expanded decryption round keys and a block costs
 * ~10 instructions, constant-time like Go's crypto/aes that 4.34 uses; without it
 * every key gets its own libcrypto AES-128-ECB context. A removed user keeps its
 * slot (dead) so that indexes stay stable. */

#if defined(__x86_64__) || defined(__i386__)
#include <emmintrin.h>
#include <wmmintrin.h>
#define AUTH_HAVE_AESNI_CODE 1

#define AUTH_EXPAND(k, rcon) auth_expand_step((k), _mm_aeskeygenassist_si128((k), (rcon)))

__attribute__((target("aes,sse2"))) static inline __m128i
auth_expand_step(__m128i key, __m128i gen)
{
    gen = _mm_shuffle_epi32(gen, 0xff);
    key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
    key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
    key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
    return _mm_xor_si128(key, gen);
}

/* AES-128 decryption round keys (the equivalent inverse cipher: InvMixColumns on the
 * middle encryption round keys, in reverse order), 11 x 16 bytes into out. */
__attribute__((target("aes,sse2"))) static void
auth_aesni_keys(const unsigned char *key, unsigned char *out)
{
    __m128i ek[11];
    ek[0] = _mm_loadu_si128((const __m128i *)key);
    ek[1] = AUTH_EXPAND(ek[0], 0x01);
    ek[2] = AUTH_EXPAND(ek[1], 0x02);
    ek[3] = AUTH_EXPAND(ek[2], 0x04);
    ek[4] = AUTH_EXPAND(ek[3], 0x08);
    ek[5] = AUTH_EXPAND(ek[4], 0x10);
    ek[6] = AUTH_EXPAND(ek[5], 0x20);
    ek[7] = AUTH_EXPAND(ek[6], 0x40);
    ek[8] = AUTH_EXPAND(ek[7], 0x80);
    ek[9] = AUTH_EXPAND(ek[8], 0x1b);
    ek[10] = AUTH_EXPAND(ek[9], 0x36);
    _mm_storeu_si128((__m128i *)out, ek[10]);
    for (int i = 1; i < 10; i++) {
        _mm_storeu_si128((__m128i *)(out + 16 * i), _mm_aesimc_si128(ek[10 - i]));
    }
    _mm_storeu_si128((__m128i *)(out + 160), ek[0]);
}

__attribute__((target("aes,sse2"))) static inline void
auth_aesni_decrypt(const unsigned char *rk, const unsigned char *in, unsigned char *out)
{
    __m128i m = _mm_xor_si128(_mm_loadu_si128((const __m128i *)in),
                              _mm_loadu_si128((const __m128i *)rk));
    for (int i = 1; i < 10; i++) {
        m = _mm_aesdec_si128(m, _mm_loadu_si128((const __m128i *)(rk + 16 * i)));
    }
    m = _mm_aesdeclast_si128(m, _mm_loadu_si128((const __m128i *)(rk + 160)));
    _mm_storeu_si128((__m128i *)out, m);
}
#endif

#define AUTH_RK_BYTES 176

static int auth_use_aesni = -1; /* -1: not checked yet */

static int
auth_aesni(void)
{
    if (auth_use_aesni < 0) {
#ifdef AUTH_HAVE_AESNI_CODE
        __builtin_cpu_init();
        auth_use_aesni = __builtin_cpu_supports("aes") && __builtin_cpu_supports("sse2");
#else
        auth_use_aesni = 0;
#endif
    }
    return auth_use_aesni;
}

typedef struct {
    PyObject_HEAD
    unsigned char *rk;   /* AES-NI: AUTH_RK_BYTES per slot */
    void **ctx;          /* no AES-NI: one ECB context per slot */
    unsigned char *live; /* 1 while the slot's user is registered */
    Py_ssize_t len, cap;
    int aesni;
} AuthTableObject;

static void
AuthTable_dealloc(AuthTableObject *self)
{
    if (self->ctx != NULL) {
        for (Py_ssize_t i = 0; i < self->len; i++) {
            if (self->ctx[i] != NULL) evp.ctx_free(self->ctx[i]);
        }
    }
    PyMem_Free(self->ctx);
    PyMem_Free(self->rk);
    PyMem_Free(self->live);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
AuthTable_init(AuthTableObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"aesni", NULL};
    int want_aesni = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|p", kwlist, &want_aesni)) return -1;
    if (evp.crc32 == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "libz crc32 unavailable");
        return -1;
    }
    self->aesni = want_aesni && auth_aesni();
    return 0;
}

static int
auth_grow(AuthTableObject *self)
{
    Py_ssize_t cap = self->cap ? self->cap * 2 : 16;
    unsigned char *live = PyMem_Realloc(self->live, (size_t)cap);
    if (live == NULL) return -1;
    self->live = live;
    if (self->aesni) {
        unsigned char *rk = PyMem_Realloc(self->rk, (size_t)cap * AUTH_RK_BYTES);
        if (rk == NULL) return -1;
        self->rk = rk;
    } else {
        void **ctx = PyMem_Realloc(self->ctx, (size_t)cap * sizeof(void *));
        if (ctx == NULL) return -1;
        self->ctx = ctx;
    }
    self->cap = cap;
    return 0;
}

static PyObject *
AuthTable_add(AuthTableObject *self, PyObject *args)
{
    Py_buffer key;
    if (!PyArg_ParseTuple(args, "y*", &key)) return NULL;
    if (key.len != 16) {
        PyBuffer_Release(&key);
        PyErr_SetString(PyExc_ValueError, "key must be 16 bytes");
        return NULL;
    }
    if (self->len == self->cap && auth_grow(self) < 0) {
        PyBuffer_Release(&key);
        return PyErr_NoMemory();
    }
    Py_ssize_t i = self->len;
    if (self->aesni) {
#ifdef AUTH_HAVE_AESNI_CODE
        auth_aesni_keys(key.buf, self->rk + i * AUTH_RK_BYTES);
#endif
    } else {
        void *ctx = evp.ctx_new();
        int ok = ctx != NULL
                 && evp.decrypt_init(ctx, evp.aes_128_ecb(), NULL, key.buf, NULL) == 1
                 && evp.set_padding(ctx, 0) == 1;
        if (!ok) {
            if (ctx != NULL) evp.ctx_free(ctx);
            PyBuffer_Release(&key);
            PyErr_SetString(PyExc_RuntimeError, "AES-128-ECB context failed");
            return NULL;
        }
        self->ctx[i] = ctx;
    }
    PyBuffer_Release(&key);
    self->live[i] = 1;
    self->len++;
    return PyLong_FromSsize_t(i);
}

static PyObject *
AuthTable_remove(AuthTableObject *self, PyObject *args)
{
    Py_ssize_t i;
    if (!PyArg_ParseTuple(args, "n", &i)) return NULL;
    if (i < 0 || i >= self->len) {
        PyErr_SetString(PyExc_IndexError, "no such slot");
        return NULL;
    }
    self->live[i] = 0;
    if (!self->aesni && self->ctx[i] != NULL) {
        evp.ctx_free(self->ctx[i]);
        self->ctx[i] = NULL;
    }
    Py_RETURN_NONE;
}

/* 1 when slot i opens auth into a block whose time is within window seconds of now
 * (and not negative) and whose CRC32 fits: the checks of the Python loop (the time
 * first, as it is the cheaper of the two; both must hold either way). */
static int
auth_fits(AuthTableObject *self, Py_ssize_t i, const unsigned char *auth, long long now,
          long long window)
{
    unsigned char plain[32];
    if (!self->live[i]) return 0;
    if (self->aesni) {
#ifdef AUTH_HAVE_AESNI_CODE
        auth_aesni_decrypt(self->rk + i * AUTH_RK_BYTES, auth, plain);
#endif
    } else {
        int outl = 0;
        if (evp.decrypt_update(self->ctx[i], plain, &outl, auth, 16) != 1 || outl != 16) {
            return 0;
        }
    }
    unsigned long long u = 0;
    for (int k = 0; k < 8; k++) u = (u << 8) | plain[k];
    long long t = (long long)u;
    if (t < 0) return 0;
    long long d = t - now;
    if (d < 0) d = -d;
    if (d > window) return 0;
    unsigned long crc = evp.crc32(0, plain, 12);
    unsigned long want = ((unsigned long)plain[12] << 24) | ((unsigned long)plain[13] << 16)
                         | ((unsigned long)plain[14] << 8) | (unsigned long)plain[15];
    return (crc & 0xFFFFFFFFUL) == want;
}

PyDoc_STRVAR(auth_match_doc,
"match(auth16, now, window, first) -> int: the first slot whose key opens auth16 into\n"
"a block with a valid CRC32 and a time within window seconds of now, trying slot\n"
"first (if >= 0) before all others in order; -1 when none fits.");

static PyObject *
AuthTable_match(AuthTableObject *self, PyObject *args)
{
    Py_buffer auth;
    long long now, window;
    Py_ssize_t first;
    if (!PyArg_ParseTuple(args, "y*LLn", &auth, &now, &window, &first)) return NULL;
    if (auth.len != 16) {
        PyBuffer_Release(&auth);
        PyErr_SetString(PyExc_ValueError, "auth must be 16 bytes");
        return NULL;
    }
    unsigned char block[16];
    memcpy(block, auth.buf, 16);
    PyBuffer_Release(&auth);
    Py_ssize_t found = -1;
    Py_BEGIN_ALLOW_THREADS
    if (first >= 0 && first < self->len && auth_fits(self, first, block, now, window)) {
        found = first;
    } else {
        for (Py_ssize_t i = 0; i < self->len; i++) {
            if (i == first) continue;
            if (auth_fits(self, i, block, now, window)) {
                found = i;
                break;
            }
        }
    }
    Py_END_ALLOW_THREADS
    return PyLong_FromSsize_t(found);
}

static PyMethodDef AuthTable_methods[] = {
    {"add", (PyCFunction)AuthTable_add, METH_VARARGS, "add(key16) -> slot"},
    {"remove", (PyCFunction)AuthTable_remove, METH_VARARGS, "remove(slot)"},
    {"match", (PyCFunction)AuthTable_match, METH_VARARGS, auth_match_doc},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject AuthTableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "v2py._chunkcrypt.AuthTable",
    .tp_basicsize = sizeof(AuthTableObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "AuthTable(): AEAD AuthID keys of a VMess server's users, scanned in C.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)AuthTable_init,
    .tp_dealloc = (destructor)AuthTable_dealloc,
    .tp_methods = AuthTable_methods,
};


/* ------------------------------------------------------------------ LegacyTable (docs/spec/vmess.md 4.2) */

/* The legacy (alterId) auth index of a VMess server, built in C: an auth is
 * HMAC-MD5(key = a 16-byte ID, message = the Unix second as 8 bytes big-endian), and the
 * table keeps every ID's inner and outer MD5 states after the key pads, so one auth
 * costs two MD5 blocks. ``emit`` appends the index records of many (ID, second) pairs to
 * the bucket bytearrays of v2py/protocol/vmess/validator.py, which owns the index layout
 * (record = auth[0:4] || big-endian u32 (slot << 8 | second & gen_mask), bucket =
 * auth[0:2] >> bucket_shift) and stays the reference and the fallback.
 *
 * MD5_CTX is used as opaque storage (92 bytes in OpenSSL 1.1 and 3.x) and copied with
 * memcpy. MD5_Init zeroes the whole struct before it sets the four chaining words, so
 * on a marker-filled buffer the last changed byte gives its size; a library whose
 * context is larger than MD5_STATE_BYTES is not used. The MD5 calls only ever run on a
 * MD5_WORK_BYTES stack buffer, so even a wrong guess could not write out of bounds. */

#define MD5_STATE_BYTES 96
#define MD5_WORK_BYTES 256
#define LEGACY_ID 16
#define LEGACY_PAD 64
#define LEGACY_RECORD 8

static int
md5_state_fits(void)
{
    _Alignas(16) unsigned char probe[MD5_WORK_BYTES];
    memset(probe, 0xA5, sizeof probe);
    if (evp.md5_init(probe) != 1) return 0;
    int last = -1;
    for (int i = 0; i < MD5_WORK_BYTES; i++) {
        if (probe[i] != 0xA5) last = i;
    }
    return last >= 16 && last < MD5_STATE_BYTES;
}

typedef struct {
    PyObject_HEAD
    unsigned char *pads; /* 2 * MD5_STATE_BYTES per slot: inner state, outer state */
    Py_ssize_t len, cap;
} LegacyTableObject;

static void
LegacyTable_dealloc(LegacyTableObject *self)
{
    PyMem_Free(self->pads);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
LegacyTable_init(LegacyTableObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "", kwlist)) return -1;
    if (evp.md5_init == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "libcrypto MD5 unavailable");
        return -1;
    }
    return 0;
}

/* out = HMAC-MD5 with the absorbed pads of one slot over msg. */
static inline void
legacy_hmac(const unsigned char *pads, const unsigned char *msg, size_t len, unsigned char *out)
{
    _Alignas(16) unsigned char work[MD5_WORK_BYTES];
    unsigned char inner[16];
    memcpy(work, pads, MD5_STATE_BYTES);
    evp.md5_update(work, msg, len);
    evp.md5_final(inner, work);
    memcpy(work, pads + MD5_STATE_BYTES, MD5_STATE_BYTES);
    evp.md5_update(work, inner, 16);
    evp.md5_final(out, work);
}

static inline void
legacy_msg(long long t, unsigned char *msg)
{
    /* Go's uint64(int64): a negative second wraps as two's complement */
    unsigned long long u = (unsigned long long)t;
    for (int i = 7; i >= 0; i--) {
        msg[i] = (unsigned char)(u & 0xFF);
        u >>= 8;
    }
}

PyDoc_STRVAR(legacy_add_doc,
"add(ids) -> int: register the concatenated 16-byte IDs in ``ids`` as new slots;\n"
"returns the first new slot (slots are numbered in order from 0).");

static PyObject *
LegacyTable_add(LegacyTableObject *self, PyObject *args)
{
    Py_buffer ids;
    if (!PyArg_ParseTuple(args, "y*", &ids)) return NULL;
    if (ids.len % LEGACY_ID != 0) {
        PyBuffer_Release(&ids);
        PyErr_SetString(PyExc_ValueError, "ids must be a multiple of 16 bytes");
        return NULL;
    }
    Py_ssize_t n = ids.len / LEGACY_ID;
    if (self->len + n > self->cap) {
        Py_ssize_t cap = self->cap ? self->cap : 16;
        while (cap < self->len + n) cap *= 2;
        unsigned char *pads = PyMem_Realloc(self->pads, (size_t)cap * 2 * MD5_STATE_BYTES);
        if (pads == NULL) {
            PyBuffer_Release(&ids);
            return PyErr_NoMemory();
        }
        self->pads = pads;
        self->cap = cap;
    }
    Py_ssize_t first = self->len;
    const unsigned char *id = ids.buf;
    for (Py_ssize_t s = 0; s < n; s++, id += LEGACY_ID) {
        unsigned char ipad[LEGACY_PAD], opad[LEGACY_PAD];
        memset(ipad, 0x36, sizeof ipad);
        memset(opad, 0x5C, sizeof opad);
        for (int i = 0; i < LEGACY_ID; i++) {
            ipad[i] ^= id[i];
            opad[i] ^= id[i];
        }
        unsigned char *dst = self->pads + (first + s) * 2 * MD5_STATE_BYTES;
        _Alignas(16) unsigned char work[MD5_WORK_BYTES];
        evp.md5_init(work);
        evp.md5_update(work, ipad, LEGACY_PAD);
        memcpy(dst, work, MD5_STATE_BYTES);
        evp.md5_init(work);
        evp.md5_update(work, opad, LEGACY_PAD);
        memcpy(dst + MD5_STATE_BYTES, work, MD5_STATE_BYTES);
    }
    self->len += n;
    PyBuffer_Release(&ids);
    return PyLong_FromSsize_t(first);
}

static PyObject *
LegacyTable_auth(LegacyTableObject *self, PyObject *args)
{
    Py_ssize_t slot;
    long long t;
    if (!PyArg_ParseTuple(args, "nL", &slot, &t)) return NULL;
    if (slot < 0 || slot >= self->len) {
        PyErr_SetString(PyExc_IndexError, "no such slot");
        return NULL;
    }
    unsigned char msg[8], out[16];
    legacy_msg(t, msg);
    legacy_hmac(self->pads + slot * 2 * MD5_STATE_BYTES, msg, 8, out);
    return PyBytes_FromStringAndSize((const char *)out, 16);
}

/* Append ``count`` 8-byte records to bucket k of gen (a list of bytearray-or-None). */
static inline int
legacy_append(PyObject *gen, Py_ssize_t k, const unsigned char *recs, Py_ssize_t count)
{
    Py_ssize_t bytes = count * LEGACY_RECORD;
    PyObject *bucket = PyList_GET_ITEM(gen, k);
    if (bucket == Py_None) {
        bucket = PyByteArray_FromStringAndSize((const char *)recs, bytes);
        if (bucket == NULL) return -1;
        PyList_SET_ITEM(gen, k, bucket); /* steals; the old item was None */
        Py_DECREF(Py_None);
        return 0;
    }
    if (!PyByteArray_CheckExact(bucket)) {
        PyErr_SetString(PyExc_TypeError, "buckets must be bytearray or None");
        return -1;
    }
    Py_ssize_t size = PyByteArray_GET_SIZE(bucket);
    if (PyByteArray_Resize(bucket, size + bytes) < 0) return -1;
    memcpy(PyByteArray_AS_STRING(bucket) + size, recs, (size_t)bytes);
    return 0;
}

PyDoc_STRVAR(legacy_emit_doc,
"emit(lo, hi, seconds, gens, skip, bucket_shift, gen_mask) -> int\n\n"
"For each slot in [lo, hi) not in the set ``skip`` (or None) and each second t in\n"
"``seconds`` (in that order: slots outer), append the record auth[0:4] || u32be(slot << 8\n"
"| t & gen_mask) of auth = HMAC-MD5(slot's ID, t) to bucket auth[0:2] >> bucket_shift\n"
"of the list ``gens[i]`` (the i-th second's generation: a list of bytearray or None, a\n"
"None bucket becomes a new bytearray). Each bucket grows once per call and gets its\n"
"records in the order above. Returns the number of slots indexed.");

static PyObject *
LegacyTable_emit(LegacyTableObject *self, PyObject *args)
{
    Py_ssize_t lo, hi;
    PyObject *seconds, *gens, *skip;
    int shift;
    long long gen_mask;
    if (!PyArg_ParseTuple(args, "nnO!O!OiL", &lo, &hi, &PyList_Type, &seconds, &PyList_Type,
                          &gens, &skip, &shift, &gen_mask)) {
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(seconds);
    if (lo < 0 || hi > self->len || lo > hi || hi > (1 << 24) || PyList_GET_SIZE(gens) != n
        || shift < 0 || shift > 16 || gen_mask < 0 || gen_mask > 0xFF) {
        PyErr_SetString(PyExc_ValueError, "bad slot range, seconds/gens or layout");
        return NULL;
    }
    if (skip != Py_None && !PyAnySet_Check(skip)) {
        PyErr_SetString(PyExc_TypeError, "skip must be a set or None");
        return NULL;
    }
    int use_skip = skip != Py_None && PySet_GET_SIZE(skip) > 0;
    Py_ssize_t buckets = (Py_ssize_t)1 << (16 - shift);
    Py_ssize_t total = (hi - lo) * n;
    if (n > 0 && total / n != hi - lo) return PyErr_NoMemory();
    /* per second: message (8) and record tag (1); its distinct generation index */
    unsigned char *msgs = PyMem_Malloc((size_t)(n ? n : 1) * 9);
    Py_ssize_t *gidx = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(Py_ssize_t));
    PyObject **distinct = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(PyObject *));
    unsigned char *recs = NULL, *sorted = NULL;
    unsigned int *keys = NULL;
    Py_ssize_t *counts = NULL;
    PyObject *result = NULL;
    Py_ssize_t ngen = 0;
    if (msgs == NULL || gidx == NULL || distinct == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t j = 0; j < n; j++) {
        long long t = PyLong_AsLongLong(PyList_GET_ITEM(seconds, j));
        if (t == -1 && PyErr_Occurred()) goto done;
        PyObject *gen = PyList_GET_ITEM(gens, j);
        if (!PyList_CheckExact(gen) || PyList_GET_SIZE(gen) != buckets) {
            PyErr_SetString(PyExc_ValueError,
                            "each generation must be a list of 2**(16-shift) buckets");
            goto done;
        }
        legacy_msg(t, msgs + 9 * j);
        msgs[9 * j + 8] = (unsigned char)(t & gen_mask);
        Py_ssize_t g = 0;
        while (g < ngen && distinct[g] != gen) g++;
        if (g == ngen) distinct[ngen++] = gen;
        gidx[j] = g;
    }
    if ((size_t)ngen * (size_t)buckets > 0xFFFFFFFFu) {
        PyErr_SetString(PyExc_ValueError, "too many generations in one call");
        goto done;
    }
    recs = PyMem_Malloc((size_t)(total ? total : 1) * LEGACY_RECORD);
    sorted = PyMem_Malloc((size_t)(total ? total : 1) * LEGACY_RECORD);
    keys = PyMem_Malloc((size_t)(total ? total : 1) * sizeof(unsigned int));
    counts = PyMem_Calloc((size_t)(ngen ? ngen : 1) * (size_t)buckets + 1, sizeof(Py_ssize_t));
    if (recs == NULL || sorted == NULL || keys == NULL || counts == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    /* pass 1: every record and its (generation, bucket) key, in slot-major order */
    Py_ssize_t made = 0, slots = 0;
    for (Py_ssize_t slot = lo; slot < hi; slot++) {
        if (use_skip) {
            PyObject *key = PyLong_FromSsize_t(slot);
            if (key == NULL) goto done;
            int in = PySet_Contains(skip, key);
            Py_DECREF(key);
            if (in < 0) goto done;
            if (in) continue;
        }
        const unsigned char *pads = self->pads + slot * 2 * MD5_STATE_BYTES;
        unsigned long tag = (unsigned long)slot << 8;
        for (Py_ssize_t j = 0; j < n; j++) {
            unsigned char a[16];
            unsigned char *rec = recs + made * LEGACY_RECORD;
            legacy_hmac(pads, msgs + 9 * j, 8, a);
            unsigned long v = tag | msgs[9 * j + 8];
            memcpy(rec, a, 4);
            rec[4] = (unsigned char)(v >> 24);
            rec[5] = (unsigned char)(v >> 16);
            rec[6] = (unsigned char)(v >> 8);
            rec[7] = (unsigned char)v;
            unsigned int key = (unsigned int)(gidx[j] * buckets
                                              + ((((Py_ssize_t)a[0] << 8) | a[1]) >> shift));
            keys[made] = key;
            counts[key + 1]++;
            made++;
        }
        slots++;
    }
    /* pass 2: a stable counting sort by key, then one append per non-empty bucket */
    Py_ssize_t nkeys = ngen * buckets;
    for (Py_ssize_t k = 0; k < nkeys; k++) counts[k + 1] += counts[k];
    for (Py_ssize_t i = 0; i < made; i++) {
        memcpy(sorted + (counts[keys[i]]++) * LEGACY_RECORD, recs + i * LEGACY_RECORD,
               LEGACY_RECORD);
    }
    /* counts[k] is now the end of key k's run, its start the previous end */
    Py_ssize_t begin = 0;
    for (Py_ssize_t k = 0; k < nkeys; k++) {
        Py_ssize_t end = counts[k];
        if (end > begin
            && legacy_append(distinct[k / buckets], k % buckets,
                             sorted + begin * LEGACY_RECORD, end - begin) < 0) {
            goto done;
        }
        begin = end;
    }
    result = PyLong_FromSsize_t(slots);
done:
    PyMem_Free(msgs);
    PyMem_Free(gidx);
    PyMem_Free(distinct);
    PyMem_Free(recs);
    PyMem_Free(sorted);
    PyMem_Free(keys);
    PyMem_Free(counts);
    return result;
}

static Py_ssize_t
LegacyTable_len(LegacyTableObject *self)
{
    return self->len;
}

static PySequenceMethods LegacyTable_as_sequence = {
    .sq_length = (lenfunc)LegacyTable_len,
};

static PyMethodDef LegacyTable_methods[] = {
    {"add", (PyCFunction)LegacyTable_add, METH_VARARGS, legacy_add_doc},
    {"auth", (PyCFunction)LegacyTable_auth, METH_VARARGS,
     "auth(slot, t) -> bytes: HMAC-MD5(slot's ID, t as 8 bytes big-endian)"},
    {"emit", (PyCFunction)LegacyTable_emit, METH_VARARGS, legacy_emit_doc},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject LegacyTableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "v2py._chunkcrypt.LegacyTable",
    .tp_basicsize = sizeof(LegacyTableObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "LegacyTable(): HMAC-MD5 pads of a VMess server's legacy IDs; builds index records in C.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)LegacyTable_init,
    .tp_dealloc = (destructor)LegacyTable_dealloc,
    .tp_as_sequence = &LegacyTable_as_sequence,
    .tp_methods = LegacyTable_methods,
};


/* ------------------------------------------------------------------ KDF (docs/spec/vmess.md 5.1) */

/* SHA256_CTX is a plain struct of 112 bytes in OpenSSL 1.1 and 3.x; it is treated as
 * opaque storage here and copied with memcpy to reuse absorbed HMAC pads. */
typedef struct {
    _Alignas(16) unsigned char b[256];
} sha_state;

#define KDF_BLOCK 64
#define KDF_DIGEST 32
#define KDF_MAX_PATH 8
#define KDF_MAX_ELEM 1024

static sha_state root_inner, root_outer; /* HMAC-SHA256 keyed "VMess AEAD KDF" */
static int root_ready = 0;

static void
root_prepare(void)
{
    static const char root_key[] = "VMess AEAD KDF";
    unsigned char pad[KDF_BLOCK];
    size_t klen = sizeof(root_key) - 1;
    memset(pad, 0, sizeof pad);
    memcpy(pad, root_key, klen);
    unsigned char ipad[KDF_BLOCK], opad[KDF_BLOCK];
    for (int i = 0; i < KDF_BLOCK; i++) {
        ipad[i] = pad[i] ^ 0x36;
        opad[i] = pad[i] ^ 0x5C;
    }
    evp.sha_init(&root_inner);
    evp.sha_update(&root_inner, ipad, KDF_BLOCK);
    evp.sha_init(&root_outer);
    evp.sha_update(&root_outer, opad, KDF_BLOCK);
    root_ready = 1;
}

typedef struct {
    const unsigned char *buf;
    size_t len;
} kdf_part;

/* H_0(parts...) = HMAC-SHA256("VMess AEAD KDF", concatenation of parts). */
static void
kdf_root(const kdf_part *parts, int nparts, unsigned char out[KDF_DIGEST])
{
    sha_state st;
    unsigned char inner[KDF_DIGEST];
    memcpy(&st, &root_inner, sizeof st);
    for (int i = 0; i < nparts; i++) evp.sha_update(&st, parts[i].buf, parts[i].len);
    evp.sha_final(inner, &st);
    memcpy(&st, &root_outer, sizeof st);
    evp.sha_update(&st, inner, KDF_DIGEST);
    evp.sha_final(out, &st);
}

/* H_level(parts...): level 0 is the root HMAC; level i is HMAC keyed path[i-1] over
 * H_{i-1}.  ``parts`` is the message as a list of pieces (prefixes are prepended by
 * the caller's level, so no concatenation buffers are needed). */
static void
kdf_level(int level, const kdf_part *path, const kdf_part *parts, int nparts,
          unsigned char out[KDF_DIGEST])
{
    if (level == 0) {
        kdf_root(parts, nparts, out);
        return;
    }
    unsigned char key[KDF_BLOCK];
    memset(key, 0, sizeof key);
    const kdf_part *k = &path[level - 1];
    if (k->len > KDF_BLOCK) {
        kdf_level(level - 1, path, k, 1, key); /* long keys are hashed first (RFC 2104) */
    } else {
        memcpy(key, k->buf, k->len);
    }
    unsigned char ipad[KDF_BLOCK], opad[KDF_BLOCK], inner[KDF_DIGEST];
    for (int i = 0; i < KDF_BLOCK; i++) {
        ipad[i] = key[i] ^ 0x36;
        opad[i] = key[i] ^ 0x5C;
    }
    kdf_part msg[KDF_MAX_PATH + 2];
    msg[0].buf = ipad;
    msg[0].len = KDF_BLOCK;
    for (int i = 0; i < nparts; i++) msg[i + 1] = parts[i];
    kdf_level(level - 1, path, msg, nparts + 1, inner);
    msg[0].buf = opad;
    msg[1].buf = inner;
    msg[1].len = KDF_DIGEST;
    kdf_level(level - 1, path, msg, 2, out);
}

PyDoc_STRVAR(kdf_doc, "kdf(key, *path) -> bytes: the 32-byte VMess AEAD KDF (docs/spec/vmess.md 5.1).");

static PyObject *
chunkcrypt_kdf(PyObject *module, PyObject *args)
{
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    if (n < 1 || n - 1 > KDF_MAX_PATH) {
        PyErr_SetString(PyExc_TypeError, "kdf(key, *path) takes a key and at most 8 path elements");
        return NULL;
    }
    Py_buffer views[KDF_MAX_PATH + 1];
    kdf_part parts[KDF_MAX_PATH + 1];
    Py_ssize_t got = 0;
    PyObject *result = NULL;
    for (; got < n; got++) {
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(args, got), &views[got], PyBUF_SIMPLE) < 0) {
            goto done;
        }
        if (views[got].len > KDF_MAX_ELEM) {
            got++;
            PyErr_SetString(PyExc_ValueError, "kdf element too long");
            goto done;
        }
        parts[got].buf = views[got].buf;
        parts[got].len = (size_t)views[got].len;
    }
    if (!root_ready) root_prepare();
    unsigned char out[KDF_DIGEST];
    kdf_level((int)(n - 1), parts + 1, parts, 1, out);
    result = PyBytes_FromStringAndSize((const char *)out, KDF_DIGEST);
done:
    for (Py_ssize_t i = 0; i < got; i++) PyBuffer_Release(&views[i]);
    return result;
}

static PyMethodDef module_methods[] = {
    {"kdf", (PyCFunction)chunkcrypt_kdf, METH_VARARGS, kdf_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef chunkcrypt_module = {
    PyModuleDef_HEAD_INIT, "v2py._chunkcrypt",
    "Optional VMess crypto accelerator over the system libcrypto: batch AEAD chunk\n"
    "sealing/opening and the AEAD header KDF.", -1, module_methods,
};

PyMODINIT_FUNC
PyInit__chunkcrypt(void)
{
    if (!evp.loaded && !load_libcrypto()) {
        PyErr_SetString(PyExc_ImportError, "libcrypto could not be loaded");
        return NULL;
    }
    if (PyType_Ready(&AeadType) < 0) return NULL;
    if (PyType_Ready(&AuthTableType) < 0) return NULL;
    if (PyType_Ready(&LegacyTableType) < 0) return NULL;
    PyObject *m = PyModule_Create(&chunkcrypt_module);
    if (m == NULL) return NULL;
    Py_INCREF(&AeadType);
    if (PyModule_AddObject(m, "Aead", (PyObject *)&AeadType) < 0) {
        Py_DECREF(&AeadType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&AuthTableType);
    if (PyModule_AddObject(m, "AuthTable", (PyObject *)&AuthTableType) < 0) {
        Py_DECREF(&AuthTableType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&LegacyTableType);
    if (PyModule_AddObject(m, "LegacyTable", (PyObject *)&LegacyTableType) < 0) {
        Py_DECREF(&LegacyTableType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
