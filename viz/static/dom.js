// Helpers over the page's elements, shared by the architecture tree and the memory panel.

export const byId = (id) => document.getElementById(id);

// The model, resolution, batch and dtype chosen in the main form, as query parameters.
export function formParams() {
  const params = new URLSearchParams();
  params.set("model", byId("model").value.trim());
  if (byId("img").value) params.set("img_size", byId("img").value);
  params.set("batch_size", byId("batch").value || "1");
  params.set("dtype", byId("dtype").value);
  return params;
}
