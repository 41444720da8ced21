// The dialogue browser: filters narrow the list; the picked dialogue shows its messages, tool calls, tasks and verdicts.
// Everything is built with textContent, so no dialogue text is ever read as markup.
(function () {
  "use strict";
  const dialogues = JSON.parse(document.getElementById("dialogue-data").textContent);
  const list = document.getElementById("dialogue-list");
  const detail = document.getElementById("dialogue-detail");
  const count = document.getElementById("dialogue-count");
  const status = document.getElementById("filter-status");
  const database = document.getElementById("filter-database");
  const text = document.getElementById("filter-text");
  let selected = null;

  function el(tag, cls, content) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (content !== undefined) node.textContent = content;
    return node;
  }

  // What the text search looks through: id, goals, every message, every call with its arguments.
  for (const d of dialogues) {
    const parts = [d.id, d.run, d.database, d.reason];
    for (const t of d.tasks) parts.push(t.goal);
    for (const m of d.messages) {
      parts.push(m.content);
      for (const c of m.calls || []) parts.push(c.name, c.arguments);
    }
    d.haystack = parts.join("\n").toLowerCase();
  }

  for (const name of [...new Set(dialogues.map((d) => d.database))].sort()) {
    const option = el("option", "", name);
    option.value = name;
    database.appendChild(option);
  }

  function matches(d) {
    if (status.value === "valid" && !d.valid) return false;
    if (status.value === "rejected" && d.valid) return false;
    if (database.value && d.database !== database.value) return false;
    const query = text.value.trim().toLowerCase();
    return !query || d.haystack.includes(query);
  }

  function renderList() {
    list.replaceChildren();
    const shown = dialogues.filter(matches);
    count.textContent = shown.length + " of " + dialogues.length + " dialogues";
    for (const d of shown) {
      const item = el("li", "dialogue-item" + (d === selected ? " selected" : ""));
      item.dataset.id = d.id;
      item.appendChild(el("span", "badge " + (d.valid ? "valid" : "rejected"), d.valid ? "valid" : "rejected"));
      item.appendChild(el("span", "", d.id));
      item.appendChild(el("span", "goal", d.tasks.length ? d.tasks[0].goal : d.reason));
      item.addEventListener("click", () => show(d));
      list.appendChild(item);
    }
  }

  function bullets(items) {
    const ul = el("ul");
    for (const item of items) ul.appendChild(el("li", "", item));
    return ul;
  }

  function renderTask(task, index) {
    const box = el("div", "task");
    box.appendChild(el("strong", "", "Task " + (index + 1) + " (" + task.difficulty + ")"));
    box.appendChild(el("p", "", task.goal));
    const rubric = task.rubric || {};
    for (const [key, label] of [["success_criteria", "Success criteria"], ["expected_tool_pattern", "Expected tool use"],
                                ["checkpoints", "Checkpoints"]]) {
      if ((rubric[key] || []).length) {
        box.appendChild(el("em", "", label));
        box.appendChild(bullets(rubric[key]));
      }
    }
    if ((rubric.items || []).length) {
      box.appendChild(el("em", "", "Rubric items"));
      box.appendChild(bullets(rubric.items.map((i) => "[" + i.category + "] " + i.text)));
    }
    return box;
  }

  function renderVerdict(v) {
    const box = el("div", "verdict " + v.judgment);
    box.appendChild(el("strong", "", "Verdict on task " + (v.task + 1) + ": " + v.judgment));
    box.appendChild(el("p", "", v.reasoning));
    box.appendChild(bullets(v.items.map((i) =>
      (i.met === true ? "met" : i.met === false ? "NOT met" : "not enforced") + " · [" + i.category + "] " + i.text +
      (i.note ? " (" + i.note + ")" : ""))));
    if (v.state) {
      box.appendChild(el("em", "", "State: " + v.state + " · facts " + (v.facts_told ? "all told" : "NOT all told")));
      if ((v.differences || []).length) box.appendChild(bullets(v.differences));
      if ((v.untold || []).length) box.appendChild(bullets(v.untold.map((f) => "not told: " + f)));
      if ((v.real_diff || []).length) {
        box.appendChild(el("em", "", "What the database really changed"));
        box.appendChild(bullets(v.real_diff));
      }
    }
    return box;
  }

  function renderMessage(m) {
    const box = el("div", "message " + m.role);
    box.appendChild(el("span", "role", m.role === "tool" ? "tool result · " + m.name : m.role));
    if (m.reasoning) box.appendChild(el("div", "reasoning", m.reasoning));
    if (m.content) box.appendChild(el("div", "content", m.content));
    for (const call of m.calls || []) {
      const c = el("div", "tool-call");
      c.appendChild(el("span", "tool-name", call.name));
      c.appendChild(el("pre", "tool-arguments", call.arguments));
      box.appendChild(c);
    }
    return box;
  }

  function show(d) {
    selected = d;
    for (const item of list.children) item.classList.toggle("selected", item.dataset.id === d.id);
    detail.replaceChildren();
    detail.appendChild(el("h3", "", d.id));
    detail.appendChild(el("p", "note", (d.valid ? "valid" : "rejected: " + d.reason) + " · run " + d.run +
                                       " · database " + d.database));
    if (d.error) detail.appendChild(el("p", "note", "error: " + d.error));
    d.tasks.forEach((t, i) => detail.appendChild(renderTask(t, i)));
    d.verdicts.forEach((v) => detail.appendChild(renderVerdict(v)));
    detail.appendChild(el("h4", "", "Messages"));
    for (const m of d.messages) detail.appendChild(renderMessage(m));
  }

  status.addEventListener("change", renderList);
  database.addEventListener("change", renderList);
  text.addEventListener("input", renderList);
  renderList();
})();
