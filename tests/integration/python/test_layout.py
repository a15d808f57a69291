"""The ctypes structures of mab._native against the C headers: a small C
program compiled here prints sizeof and offsetof of every field, so a change
to a public struct that the binding does not follow fails this test."""
import ctypes
import json
import os
import re
import subprocess
import unittest

from support import SOURCE_DIR, TempDirTest, tool_env
from mab import _native

# C struct name -> its fields, in declaration order (as in _native).
STRUCTS = {name: [f[0] for f in cls._fields_] for name, cls in _native.STRUCTS.items()}


class LayoutTest(TempDirTest):
    def c_layout(self):
        lines = ['#include <stdio.h>', '#include <stddef.h>', '#include "mab/mab.h"',
                 '#include "mab/adapter.h"', "int main(void) {", 'printf("{");']
        for i, (name, fields) in enumerate(sorted(STRUCTS.items())):
            parts = ['\\"%s\\": [%%zu' % name]
            args = ["sizeof(%s)" % name]
            for field in fields:
                parts.append('[\\"%s\\", %%zu, %%zu]' % field)
                args += ["offsetof(%s, %s)" % (name, field),
                         "sizeof(((%s *)0)->%s)" % (name, field)]
            sep = ", " if i else ""
            lines.append('printf("%s%s]", %s);' % (sep, ", ".join(parts), ", ".join(args)))
        lines += ['printf("}\\n");', "return 0; }"]
        src = self.path("layout.c")
        with open(src, "w") as f:
            f.write("\n".join(lines))
        exe = self.path("layout")
        cc = os.environ.get("CC", "cc")
        subprocess.run([cc, "-std=c11", "-I", os.path.join(SOURCE_DIR, "include"), "-o", exe,
                        src], check=True, env=tool_env())
        return json.loads(subprocess.run([exe], check=True, capture_output=True, text=True,
                                         env=tool_env()).stdout)

    def test_every_struct_matches_the_header(self):
        layout = self.c_layout()
        self.assertEqual(set(layout), set(STRUCTS))
        for name, cls in _native.STRUCTS.items():
            size, *fields = layout[name]
            with self.subTest(struct=name):
                self.assertEqual(ctypes.sizeof(cls), size, "sizeof(%s)" % name)
                for (field, c_offset, c_size) in fields:
                    py = getattr(cls, field)
                    self.assertEqual((py.offset, py.size), (c_offset, c_size),
                                     "%s.%s: (offset, size) in Python vs C" % (name, field))

    def test_header_constants(self):
        header = open(os.path.join(SOURCE_DIR, "include", "mab", "mab.h")).read()
        for name in ("ENOMEM", "EINVAL", "ECONFIG", "EPLUGIN", "ENOTFOUND", "ERANGE",
                     "ESTORAGE", "EBUSY", "ECORRUPT", "EIO", "ECLAIMED"):
            self.assertIn("#define MAB_%s (%d)" % (name, getattr(_native, name)), header)
        # Every status code of the header has its constant in the binding.
        for name, value in re.findall(r"#define MAB_(E[A-Z]+) \((-\d+)\)", header):
            self.assertEqual(getattr(_native, name, None), int(value), "MAB_" + name)
        self.assertIn("#define MAB_ERROR_MAX %d" % _native.MAB_ERROR_MAX, header)
        self.assertIn("#define MAB_OPEN_NO_STORAGE 0x%xu" % _native.OPEN_NO_STORAGE, header)
        self.assertIn("#define MAB_OPEN_SEED 0x%xu" % _native.OPEN_SEED, header)


if __name__ == "__main__":
    unittest.main()
