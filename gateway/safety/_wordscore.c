/* The injection model's word part (gateway/safety/learned.py, LinearModel.text_part) in C: the best sum of
 * `window` consecutive word contributions; and the reading of an ASCII text that comes before it (injection.py's
 * normalise and split_words). Optional: learned.py computes the same numbers in Python when this
 * module is not built, and tests/test_wordscore.py holds the two to the same results.
 *
 * Why C: in Python each word costs two dictionary probes through tuple and string objects scattered over the
 * heap, the single largest share of the full pipeline's CPU; with cold caches (a gateway at a moderate rate)
 * every probe is a chain of cache misses. Here the model's weights live in three flat open-addressing tables
 * built once when the model loads, probed with a hash of each word's bytes and confirmed by comparing the
 * bytes themselves, so a result never depends on a hash collision.
 *
 * The tables are read-only after construction and an attacker's words only probe them: a lookup ends at the
 * first empty slot of a table at most half full, whatever the text.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define EMPTY UINT32_MAX
#define STACK_WORDS 512

typedef struct {
    uint64_t hash;
    uint32_t offset, length; /* the key's bytes in the blob; length EMPTY: a free slot */
    double value;
} Entry;

typedef struct {
    uint64_t hash;
    uint32_t first_offset, first_length, second_offset, second_length; /* second_length EMPTY: a free slot */
    double value;
} PairEntry;

typedef struct {
    PyObject_HEAD
    char *blob;
    size_t blob_used, blob_size;
    Entry *words, *prefixes;
    PairEntry *pairs;
    size_t words_mask, prefixes_mask, pairs_mask;
    Py_ssize_t prefix_length;
} Weights;

static uint64_t mix(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 33);
}

static uint64_t hash_bytes(const char *data, size_t length) {
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a, then mixed: the tables index by the low bits */
    for (size_t i = 0; i < length; i++) {
        h ^= (unsigned char)data[i];
        h *= 0x100000001b3ULL;
    }
    return mix(h ^ length);
}

static uint64_t hash_pair(uint64_t first, uint64_t second) {
    return mix(first * 0x9e3779b97f4a7c15ULL + second + 1);
}

static size_t capacity_for(Py_ssize_t count) {
    size_t capacity = 16;
    while (capacity < (size_t)count * 2) capacity <<= 1;
    return capacity;
}

/* Copies `length` bytes into the blob; returns their offset, or EMPTY when the blob would pass 4 GiB. */
static uint32_t keep(Weights *self, const char *data, size_t length) {
    if (self->blob_used + length >= EMPTY) return EMPTY;
    if (self->blob_used + length > self->blob_size) {
        size_t size = (self->blob_size ? self->blob_size * 2 : 4096);
        while (size < self->blob_used + length) size *= 2;
        char *grown = PyMem_Realloc(self->blob, size);
        if (grown == NULL) return EMPTY;
        self->blob = grown;
        self->blob_size = size;
    }
    memcpy(self->blob + self->blob_used, data, length);
    self->blob_used += length;
    return (uint32_t)(self->blob_used - length);
}

static int same(const Weights *self, uint32_t offset, uint32_t length, const char *data, size_t size) {
    return length == size && memcmp(self->blob + offset, data, size) == 0;
}

static const Entry *find(const Weights *self, const Entry *table, size_t mask, const char *data, size_t length,
                         uint64_t hash) {
    for (size_t slot = hash & mask;; slot = (slot + 1) & mask) {
        const Entry *entry = &table[slot];
        if (entry->length == EMPTY) return NULL;
        if (entry->hash == hash && same(self, entry->offset, entry->length, data, length)) return entry;
    }
}

static const PairEntry *find_pair(const Weights *self, const char *first, size_t first_length, uint64_t first_hash,
                                  const char *second, size_t second_length, uint64_t second_hash) {
    uint64_t hash = hash_pair(first_hash, second_hash);
    for (size_t slot = hash & self->pairs_mask;; slot = (slot + 1) & self->pairs_mask) {
        const PairEntry *entry = &self->pairs[slot];
        if (entry->second_length == EMPTY) return NULL;
        if (entry->hash == hash && same(self, entry->first_offset, entry->first_length, first, first_length)
            && same(self, entry->second_offset, entry->second_length, second, second_length))
            return entry;
    }
}

/* The bytes of a str key (UTF-8), or NULL with an exception set. */
static const char *key_bytes(PyObject *key, Py_ssize_t *length) {
    if (!PyUnicode_Check(key)) {
        PyErr_SetString(PyExc_TypeError, "weights: keys must be str");
        return NULL;
    }
    return PyUnicode_AsUTF8AndSize(key, length);
}

static int fill(Weights *self, PyObject *mapping, Entry **table, size_t *mask) {
    if (!PyDict_Check(mapping)) {
        PyErr_SetString(PyExc_TypeError, "weights: a dict of str to float expected");
        return -1;
    }
    size_t capacity = capacity_for(PyDict_Size(mapping));
    *table = PyMem_Malloc(capacity * sizeof(Entry));
    if (*table == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < capacity; i++) (*table)[i].length = EMPTY;
    *mask = capacity - 1;
    PyObject *key, *value;
    Py_ssize_t position = 0, length;
    while (PyDict_Next(mapping, &position, &key, &value)) {
        const char *data = key_bytes(key, &length);
        if (data == NULL) return -1;
        double weight = PyFloat_AsDouble(value);
        if (weight == -1.0 && PyErr_Occurred()) return -1;
        uint64_t hash = hash_bytes(data, (size_t)length);
        size_t slot = hash & *mask;
        while ((*table)[slot].length != EMPTY) slot = (slot + 1) & *mask;
        uint32_t offset = keep(self, data, (size_t)length);
        if (offset == EMPTY) {
            PyErr_NoMemory();
            return -1;
        }
        (*table)[slot] = (Entry){hash, offset, (uint32_t)length, weight};
    }
    return 0;
}

static int fill_pairs(Weights *self, PyObject *mapping) {
    if (!PyDict_Check(mapping)) {
        PyErr_SetString(PyExc_TypeError, "weights: pairs must be a dict of (str, str) to float");
        return -1;
    }
    size_t capacity = capacity_for(PyDict_Size(mapping));
    self->pairs = PyMem_Malloc(capacity * sizeof(PairEntry));
    if (self->pairs == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < capacity; i++) self->pairs[i].second_length = EMPTY;
    self->pairs_mask = capacity - 1;
    PyObject *key, *value;
    Py_ssize_t position = 0, first_length, second_length;
    while (PyDict_Next(mapping, &position, &key, &value)) {
        if (!PyTuple_Check(key) || PyTuple_GET_SIZE(key) != 2) {
            PyErr_SetString(PyExc_TypeError, "weights: pair keys must be (str, str)");
            return -1;
        }
        const char *first = key_bytes(PyTuple_GET_ITEM(key, 0), &first_length);
        if (first == NULL) return -1;
        const char *second = key_bytes(PyTuple_GET_ITEM(key, 1), &second_length);
        if (second == NULL) return -1;
        double weight = PyFloat_AsDouble(value);
        if (weight == -1.0 && PyErr_Occurred()) return -1;
        uint64_t hash = hash_pair(hash_bytes(first, (size_t)first_length), hash_bytes(second, (size_t)second_length));
        size_t slot = hash & self->pairs_mask;
        while (self->pairs[slot].second_length != EMPTY) slot = (slot + 1) & self->pairs_mask;
        uint32_t first_offset = keep(self, first, (size_t)first_length);
        uint32_t second_offset = first_offset == EMPTY ? EMPTY : keep(self, second, (size_t)second_length);
        if (second_offset == EMPTY) {
            PyErr_NoMemory();
            return -1;
        }
        self->pairs[slot] = (PairEntry){hash, first_offset, (uint32_t)first_length, second_offset,
                                        (uint32_t)second_length, weight};
    }
    return 0;
}

static void Weights_dealloc(Weights *self) {
    PyMem_Free(self->blob);
    PyMem_Free(self->words);
    PyMem_Free(self->prefixes);
    PyMem_Free(self->pairs);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Weights_init(Weights *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"words", "prefixes", "pairs", "prefix_length", NULL};
    PyObject *words, *prefixes, *pairs;
    Py_ssize_t prefix_length;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOn", names, &words, &prefixes, &pairs, &prefix_length))
        return -1;
    if (self->words != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Weights is built once");
        return -1;
    }
    if (prefix_length < 1) {
        PyErr_SetString(PyExc_ValueError, "prefix_length must be positive");
        return -1;
    }
    self->prefix_length = prefix_length;
    if (fill(self, words, &self->words, &self->words_mask) < 0) return -1;
    if (fill(self, prefixes, &self->prefixes, &self->prefixes_mask) < 0) return -1;
    return fill_pairs(self, pairs);
}

/* best_window(words, window): the largest sum of `window` consecutive contributions (all of them when fewer),
 * summed in the order LinearModel.text_part sums them, so the floats come out the same; None when a word is not
 * ASCII (the caller's Python path decides then). */
static PyObject *Weights_best_window(Weights *self, PyObject *args) {
    PyObject *words;
    Py_ssize_t window;
    if (!PyArg_ParseTuple(args, "O!n", &PyList_Type, &words, &window)) return NULL;
    if (self->words == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Weights not built");
        return NULL;
    }
    if (window < 1) {
        PyErr_SetString(PyExc_ValueError, "window must be positive");
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(words);
    double stack[STACK_WORDS + 1];
    double *running = count < STACK_WORDS ? stack : PyMem_Malloc((size_t)(count + 1) * sizeof(double));
    if (running == NULL) return PyErr_NoMemory();
    const char *previous = "";
    size_t previous_length = 0;
    uint64_t previous_hash = hash_bytes("", 0);
    running[0] = 0.0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *word = PyList_GET_ITEM(words, i);
        if (!PyUnicode_Check(word) || !PyUnicode_IS_ASCII(word)) {
            if (running != stack) PyMem_Free(running);
            Py_RETURN_NONE;
        }
        const char *data = (const char *)PyUnicode_DATA(word);
        size_t length = (size_t)PyUnicode_GET_LENGTH(word);
        uint64_t hash = hash_bytes(data, length);
        double value;
        const PairEntry *pair = find_pair(self, previous, previous_length, previous_hash, data, length, hash);
        if (pair != NULL) {
            value = pair->value;
        } else {
            const Entry *known = find(self, self->words, self->words_mask, data, length, hash);
            if (known != NULL) {
                value = known->value;
            } else { /* a word the model never saw: its prefix's weight */
                size_t size = length < (size_t)self->prefix_length ? length : (size_t)self->prefix_length;
                const Entry *prefix = find(self, self->prefixes, self->prefixes_mask, data, size, hash_bytes(data, size));
                value = prefix != NULL ? prefix->value : 0.0;
            }
        }
        running[i + 1] = running[i] + value;
        previous = data;
        previous_length = length;
        previous_hash = hash;
    }
    double best = running[count]; /* fewer words than the window: all of them */
    if (count > window) {
        best = running[window] - running[0];
        for (Py_ssize_t start = 1; start + window <= count; start++) {
            double total = running[start + window] - running[start];
            if (total > best) best = total;
        }
    }
    if (running != stack) PyMem_Free(running);
    return PyFloat_FromDouble(best);
}

/* Python's str.isspace() and str.split() whitespace, for ASCII. */
static int is_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f); }
static int is_word(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

static PyObject *ascii_string(const char *data, Py_ssize_t length) {
    PyObject *string = PyUnicode_New(length, 127);
    if (string != NULL) memcpy(PyUnicode_1BYTE_DATA(string), data, (size_t)length);
    return string;
}

/* read(text): injection.py's reading of an ASCII text, (plain, words, words holding a digit), as normalise,
 * split_words and filterfalse(str.isalpha) give it: lower-cased, whitespace runs collapsed when the text holds a
 * double space, a newline or a tab (keeping one space at either end where there was whitespace), and the runs
 * of a-z and 0-9 in that. None when the text is not ASCII: the Python path folds Unicode first. */
static PyObject *read_text(PyObject *module, PyObject *text) {
    (void)module;
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "read: a str expected");
        return NULL;
    }
    if (!PyUnicode_IS_ASCII(text)) Py_RETURN_NONE;
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    const unsigned char *source = PyUnicode_1BYTE_DATA(text);
    PyObject *lower = PyUnicode_New(length, 127);
    if (lower == NULL) return NULL;
    unsigned char *low = PyUnicode_1BYTE_DATA(lower);
    int collapse = 0;
    for (Py_ssize_t i = 0; i < length; i++) {
        unsigned char c = source[i];
        low[i] = (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
        if (c == '\n' || c == '\t' || (c == ' ' && i > 0 && source[i - 1] == ' ')) collapse = 1;
    }
    PyObject *plain = lower;
    if (collapse) {
        char *buffer = PyMem_Malloc((size_t)length + 1);
        if (buffer == NULL) {
            Py_DECREF(lower);
            return PyErr_NoMemory();
        }
        Py_ssize_t size = 0, i = 0;
        int inner = 0; /* a non-space has been written */
        while (i < length) {
            if (is_space(low[i])) {
                while (i < length && is_space(low[i])) i++;
                if (inner && i < length) buffer[size++] = ' '; /* between two runs of text */
            } else {
                buffer[size++] = (char)low[i++];
                inner = 1;
            }
        }
        if (!inner) {
            plain = ascii_string(" ", length ? 1 : 0);
        } else {
            int before = is_space(low[0]), after = is_space(low[length - 1]);
            PyObject *collapsed = PyUnicode_New(size + before + after, 127);
            if (collapsed != NULL) {
                unsigned char *out = PyUnicode_1BYTE_DATA(collapsed);
                if (before) out[0] = ' ';
                memcpy(out + before, buffer, (size_t)size);
                if (after) out[before + size] = ' ';
            }
            plain = collapsed;
        }
        PyMem_Free(buffer);
        Py_DECREF(lower);
        if (plain == NULL) return NULL;
    }
    PyObject *words = PyList_New(0), *mixed = PyList_New(0);
    if (words == NULL || mixed == NULL) goto failed;
    const char *data = (const char *)PyUnicode_1BYTE_DATA(plain);
    Py_ssize_t size = PyUnicode_GET_LENGTH(plain);
    for (Py_ssize_t i = 0; i < size;) {
        if (!is_word((unsigned char)data[i])) {
            i++;
            continue;
        }
        Py_ssize_t start = i;
        int digit = 0;
        for (; i < size && is_word((unsigned char)data[i]); i++) digit |= data[i] <= '9';
        PyObject *word = ascii_string(data + start, i - start);
        if (word == NULL) goto failed;
        int added = PyList_Append(words, word);
        if (added == 0 && digit) added = PyList_Append(mixed, word);
        Py_DECREF(word);
        if (added < 0) goto failed;
    }
    return Py_BuildValue("(NNN)", plain, words, mixed);
failed:
    Py_DECREF(plain);
    Py_XDECREF(words);
    Py_XDECREF(mixed);
    return NULL;
}

static PyMethodDef module_functions[] = {
    {"read", (PyCFunction)read_text, METH_O,
     "read(text) -> (plain, words, mixed) | None: injection.py's reading of an ASCII text (None: not ASCII)."},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef Weights_methods[] = {
    {"best_window", (PyCFunction)Weights_best_window, METH_VARARGS,
     "best_window(words, window) -> float | None: the best sum of `window` consecutive word contributions."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject WeightsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gateway.safety._wordscore.Weights",
    .tp_basicsize = sizeof(Weights),
    .tp_dealloc = (destructor)Weights_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Weights(words, prefixes, pairs, prefix_length): the injection model's word weights, for best_window.",
    .tp_methods = Weights_methods,
    .tp_init = (initproc)Weights_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_wordscore",
    .m_doc = "The injection model's word part in C (see learned.py).",
    .m_size = -1,
    .m_methods = module_functions,
};

PyMODINIT_FUNC PyInit__wordscore(void) {
    if (PyType_Ready(&WeightsType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&WeightsType);
    if (PyModule_AddObject(m, "Weights", (PyObject *)&WeightsType) < 0) {
        Py_DECREF(&WeightsType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
