document.querySelector("#app p").textContent = "Dashboard";
