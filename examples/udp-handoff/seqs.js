// "5 datagrams, seq 0-2,7-8": a count and the sequence numbers as ranges, for the examples' output.
export function summary(seqs) {
  const sorted = [...new Set(seqs)].sort((a, b) => a - b);
  const ranges = [];
  for (let i = 0; i < sorted.length; i++) {
    const start = sorted[i];
    while (i + 1 < sorted.length && sorted[i + 1] === sorted[i] + 1) i++;
    ranges.push(start === sorted[i] ? `${start}` : `${start}-${sorted[i]}`);
  }
  return `${seqs.length} datagrams, seq ${ranges.join(',') || 'none'}`;
}
