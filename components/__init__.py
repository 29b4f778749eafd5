"""City management components (GB/T 30428.2): classes, codes, import, editing."""
