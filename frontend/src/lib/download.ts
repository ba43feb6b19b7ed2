/** Offer text as a file download (browser and desktop webview). */
export function downloadText(name: string, text: string, type = 'application/yaml', doc: Document = document): void {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = doc.createElement('a');
  a.href = url;
  a.download = name;
  a.style.display = 'none';
  doc.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** A file name for a site export: "stmary-lab2-site.yaml". */
export function exportName(cluster: string | undefined): string {
  const base = (cluster ?? '').toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '');
  return `${base || 'onramp'}-site.yaml`;
}
