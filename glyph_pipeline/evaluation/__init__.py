"""Judging samples, in the order an evaluation runs: the judges read glyphs (`judge`: radicals, `typeface`: fonts),
`metrics` turns readings into statistics (FGD, KID, adherence, copy rate), `checks` samples the pipeline for each
statistic, and `evaluate` runs the checks and reports them (``glyffuser evaluate``)."""
