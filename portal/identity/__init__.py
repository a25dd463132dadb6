"""The reference identity service (issue 7 step 3): MRZ, OCR, specimens, evidence."""
