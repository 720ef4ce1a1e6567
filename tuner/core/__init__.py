"""The evaluation core: data → windows → families (and their models) → metrics → trial, and the
statistics that compare trials. Runs without Ray: a trial is a plain function call here."""
